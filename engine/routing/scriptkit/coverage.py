"""``graylane test --coverage``: which lines of each script its cases ran, and which never ran."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScriptCoverage:
    """One script's executable lines (from its bytecode) and the ones its cases executed (the line hook)."""

    script: str  # where it came from (a path, or builtin:<path>)
    source: str
    executable: frozenset[int]
    executed: frozenset[int]

    @property
    def covered(self) -> int:
        return len(self.executable & self.executed)

    @property
    def missed(self) -> list[int]:
        return sorted(self.executable - self.executed)

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / len(self.executable) if self.executable else 100.0


def line_ranges(numbers: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9"."""
    groups: list[list[int]] = []
    for number in numbers:
        if groups and number == groups[-1][1] + 1:
            groups[-1][1] = number
        else:
            groups.append([number, number])
    return ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in groups)


def report_lines(coverages: list[ScriptCoverage]) -> list[str]:
    """The coverage section of ``graylane test --coverage``: a line per script, the source of every line no
    case ran, and the total."""
    lines = ["coverage:"]
    for item in coverages:
        summary = f"  {item.script}: {item.covered}/{len(item.executable)} lines ({item.percent:.1f}%)"
        if item.missed:
            summary += f", never ran: {line_ranges(item.missed)}"
        lines.append(summary)
        source = item.source.splitlines()
        lines.extend(f"    {number:>4} | {source[number - 1].rstrip()}" for number in item.missed)
    covered = sum(item.covered for item in coverages)
    total = sum(len(item.executable) for item in coverages)
    percent = 100.0 * covered / total if total else 100.0
    lines.append(f"  total: {covered}/{total} lines ({percent:.1f}%)")
    return lines
