"""Generated parity cases where graylane's Lua data conversion does not yet behave as Kruise's runtime
(gopher-lua, values passed through JSON). This is the one place such cases are listed: the conversion belongs
to engine/lua/ (the sandbox work); when it is fixed, the runtime parity test reports each listed case that
now agrees, and the entry must be removed.

case id -> what differs.
"""
from __future__ import annotations

CONVERSION_DIFFERENCES: dict[str, str] = {}
