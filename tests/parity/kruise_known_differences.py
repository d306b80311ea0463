"""Generated parity cases where graylane does not yet pass data to scripts as Kruise's runtime does
(gopher-lua, values passed through JSON). This is the one place such cases are listed: the conversion
belongs to engine/lua/ and the script input (the sandbox work, issue #9's conversion bullets); when it is
fixed, the runtime parity test reports each listed case that now agrees, and its entry must be removed.
The built-in parity test leaves these cases out too (same cause; after the fix graylane's built-in script
writes headers: {request: {}} where Kruise's encoder writes null, which the recognisers then have to name).

case id -> what differs (found by tests/parity/test_kruise_runtime.py against Kruise v0.6.3).
"""
from __future__ import annotations

EMPTY_MODIFIER = (
    "requestHeaderModifier: {} of the routed step reaches Kruise's script as an empty "
    "table, which is truthy, so Kruise writes headers: {request: null} on every match rule (its JSON encoder "
    "turns the empty table into null); graylane leaves the empty modifier out of obj, so no headers are written"
)

CONVERSION_DIFFERENCES: dict[str, str] = {
    "case-0030": EMPTY_MODIFIER,
    "case-0045": EMPTY_MODIFIER,
    "case-0060": EMPTY_MODIFIER,
    "case-0123": EMPTY_MODIFIER,
    "case-0136": EMPTY_MODIFIER,
    "case-0187": EMPTY_MODIFIER,
    "case-0210": EMPTY_MODIFIER,
    "case-0222": EMPTY_MODIFIER,
    "case-0271": EMPTY_MODIFIER,
    "case-0275": EMPTY_MODIFIER,
    "case-0285": EMPTY_MODIFIER,
    "case-0300": EMPTY_MODIFIER,
    "case-0313": EMPTY_MODIFIER,
    "case-0346": EMPTY_MODIFIER,
    "case-0385": EMPTY_MODIFIER,
    "case-0427": EMPTY_MODIFIER,
    "case-0463": EMPTY_MODIFIER,
    "case-0513": EMPTY_MODIFIER,
    "case-0538": EMPTY_MODIFIER,
    "case-0561": EMPTY_MODIFIER,
    "case-0580": EMPTY_MODIFIER,
}
