"""The Lua host: a sandbox that runs untrusted traffic-routing scripts with time and memory limits.

Public: ``sandbox.LuaSandbox`` (``run(script, obj)``), ``sandbox.Script``, ``scripts.ScriptLibrary`` (where a
script for ``<group>/<Kind>`` comes from: user directories, a Kruise ConfigMap, the built-ins). Imports nothing of
graylane but ``engine.errors``.
"""
