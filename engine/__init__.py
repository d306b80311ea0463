"""graylane: a Kruise-compatible host for Lua traffic-routing scripts, and the tools around it.

Wings, lowest first (a wing imports only lower ones; tests/test_layout.py enforces it):
``lua`` (the Lua host) < ``routing`` (what a strategy does to network objects) < ``checks`` (schemas and
analyzers) < ``fulllink`` (coloring, chain, simulator) < ``cluster`` (the only I/O against a cluster) < ``cli``
(arguments in, one wing function, output). Shared by all: ``documents``, ``inputs`` (files), ``errors``,
``fields``, ``regexes``.
"""
