"""RE2, the regex syntax Envoy and Istio use: validity and full matching, shared by every wing."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional


def _re2() -> Any:
    import re2  # imported on the first regex a command meets (start-up time: most inputs have none)

    return re2


@lru_cache(maxsize=1024)
def _compile_re2(pattern: str) -> Any:
    re2 = _re2()
    options = re2.Options()
    options.log_errors = False  # RE2 would otherwise log every rejected pattern on stderr
    return re2.compile(pattern, options)


def re2_error(pattern: str) -> Optional[str]:
    """Why ``pattern`` is not valid RE2 (what Envoy uses), or None when it is."""
    try:
        _compile_re2(pattern)
    except _re2().error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def re2_fullmatch(pattern: str, text: str) -> bool:
    """Whether RE2 ``pattern`` matches all of ``text`` (Istio regex semantics); False for invalid patterns."""
    if re2_error(pattern) is not None:
        return False
    return _compile_re2(pattern).fullmatch(text) is not None
