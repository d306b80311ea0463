"""Full-link gray releases: the coloring EnvoyFilter, the chain spec, and the request simulator.

Public: ``color.envoy_filter``/``generate_lua`` (``graylane color``), ``chain.generate`` (``graylane chain``),
``simulate.simulate`` (``graylane simulate``, which runs the EnvoyFilter Lua in ``envoy.EnvoyLuaEmulator``).
"""
