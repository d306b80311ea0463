"""Near-miss names: "did you mean vs-mocka?" when a reference says ``vs-mocak``. Pure.

Closeness is the optimal-string-alignment distance (an insertion, deletion, substitution or swap of two
neighbouring characters counts 1), as kubectl's "did you mean" uses an edit distance: the candidates at the
smallest distance are suggested, if that distance is small for the name's length.
"""
from __future__ import annotations

from typing import Iterable


def distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap neighbours) that turn ``a`` into ``b``."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def closest(name: str, candidates: Iterable[str]) -> list[str]:
    """The candidates nearest to ``name``, when at most 2 edits away (a quarter of a long name's length)."""
    limit = max(2, len(name) // 4)
    scored = sorted((distance(name.lower(), c.lower()), c) for c in {c for c in candidates if c and c != name})
    if not scored or scored[0][0] > limit:
        return []
    return [c for d, c in scored if d == scored[0][0]][:3]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean vs-mocka?"`` for a near miss, else ``""``: appended to a not-found message."""
    found = closest(name, candidates)
    return "; did you mean " + " or ".join(found) + "?" if found else ""
