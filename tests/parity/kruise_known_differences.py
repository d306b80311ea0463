"""Generated parity cases where Kruise's own scripts give a different object under graylane's runtime than
under Kruise's (gopher-lua, values passed through JSON). This is the one place such cases are listed: the
conversion belongs to engine/lua/; when it changes, the runtime parity test reports each listed case that now
agrees, and its entry must be removed. (The built-in scripts' parity test runs every case; there the same
difference is the named fix "empty-modifier-request".)

case id -> what differs (found by tests/parity/test_kruise_runtime.py against Kruise v0.6.3).
"""
from __future__ import annotations

EMPTY_MODIFIER = (
    "requestHeaderModifier: {} of the routed step reaches Kruise's script as an empty table on both sides, "
    "and the script puts it on every match rule as headers.request; Kruise's JSON encoder writes the empty "
    "table as null, graylane's round trip gives back the empty map it was given: headers: {request: {}}"
)

CONVERSION_DIFFERENCES: dict[str, str] = {
    "case-0091": EMPTY_MODIFIER,
    "case-0176": EMPTY_MODIFIER,
    "case-0215": EMPTY_MODIFIER,
    "case-0222": EMPTY_MODIFIER,
    "case-0262": EMPTY_MODIFIER,
    "case-0266": EMPTY_MODIFIER,
    "case-0292": EMPTY_MODIFIER,
    "case-0336": EMPTY_MODIFIER,
    "case-0415": EMPTY_MODIFIER,
    "case-0557": EMPTY_MODIFIER,
}
