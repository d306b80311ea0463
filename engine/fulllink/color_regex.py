"""Regular expressions for the coloring Lua filter: RE2 syntax in, a linear-time matcher in Lua out.

Envoy's Lua (LuaJIT) has no regex library, only Lua patterns. So a coloring rule's regex is validated as
RE2 (the syntax Istio uses for VirtualService matches), parsed here and compiled into a Thompson NFA:
a list of instructions written into the generated code as a Lua table of numbers (no user text ends up
in the Lua source), run by ``LUA_MATCHER`` (a Pike VM: time linear in the input, no catastrophic
backtracking, so a regex cannot stall the gateway).

Semantics follow RE2 with a full match (like Istio's ``regex`` header match): ``\\d \\w \\s \\b`` are ASCII,
``.`` and negated classes match one UTF-8 character (never a newline for ``.``, unless ``(?s)``), and the
flags ``i`` (ASCII letters), ``s`` and ``m`` are supported. Not supported, with a clear error: POSIX
classes (``[[:alpha:]]``), Unicode classes (``\\pL``), ranges or case-folding of non-ASCII characters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional


try:  # Python 3.11+
    from re import _constants as C  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

MAX_INSTRUCTIONS = 4000

# Instruction opcodes (shared with LUA_MATCHER).
CHAR, SPLIT, ASSERT, MATCH, JUMP = 1, 2, 3, 4, 5
# Assertion kinds.
TEXT_START, TEXT_END, LINE_START, LINE_END, WORD_BOUNDARY, NOT_WORD_BOUNDARY = 1, 2, 3, 4, 5, 6

_DIGIT = [(0x30, 0x39)]
_WORD = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE = [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)]  # RE2's \s: [\t\n\f\r ]
_CATEGORIES = {
    C.CATEGORY_DIGIT: (_DIGIT, False), C.CATEGORY_NOT_DIGIT: (_DIGIT, True),
    C.CATEGORY_WORD: (_WORD, False), C.CATEGORY_NOT_WORD: (_WORD, True),
    C.CATEGORY_SPACE: (_SPACE, False), C.CATEGORY_NOT_SPACE: (_SPACE, True),
}
# Bytes a UTF-8 decoder treats as one (invalid) character each, like RE2 does.
_INVALID_SINGLE = [(0x80, 0xC1), (0xF5, 0xFF)]
_MULTIBYTE = [  # (lead byte range, number of continuation bytes)
    ((0xC2, 0xDF), 1), ((0xE0, 0xEF), 2), ((0xF0, 0xF4), 3),
]
_CONTINUATION = (0x80, 0xBF)


class RegexError(ValueError):
    """The expression is not valid RE2, or uses a feature the coloring filter cannot run."""


@dataclass
class _Node:
    kind: str  # "bytes" (ranges), "seq", "alt", "repeat", "assert", "empty"
    ranges: list = field(default_factory=list)
    items: list = field(default_factory=list)
    low: int = 0
    high: Optional[int] = None  # None: unbounded
    assertion: int = 0


def _seq(items: list) -> _Node:
    return _Node("seq", items=items)


def _alt(items: list) -> _Node:
    return _Node("alt", items=items)


def _bytes(ranges: list) -> _Node:
    return _Node("bytes", ranges=_merge(ranges))


def _merge(ranges: list) -> list:
    merged: list = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _complement_ascii(ranges: list) -> list:
    result, start = [], 0
    for low, high in _merge([r for r in ranges if r[0] <= 0x7F]):
        if low > start:
            result.append((start, low - 1))
        start = max(start, high + 1)
    if start <= 0x7F:
        result.append((start, 0x7F))
    return result


def _any_character(ascii_ranges: list) -> _Node:
    """One character: an ASCII byte in ``ascii_ranges``, or any multi-byte UTF-8 sequence, or an invalid byte."""
    options = [_bytes(ascii_ranges + _INVALID_SINGLE)] if ascii_ranges else [_bytes(_INVALID_SINGLE)]
    for lead, count in _MULTIBYTE:
        options.append(_seq([_bytes([lead])] + [_bytes([_CONTINUATION]) for _ in range(count)]))
    return _alt(options)


def _case_ranges(ranges: list) -> list:
    extra = []
    for low, high in ranges:
        for a, b, delta in ((0x41, 0x5A, 0x20), (0x61, 0x7A, -0x20)):
            lo, hi = max(low, a), min(high, b)
            if lo <= hi:
                extra.append((lo + delta, hi + delta))
    return ranges + extra


def _literal(code: int, ignore_case: bool) -> _Node:
    if code < 0x80:
        ranges = [(code, code)]
        return _bytes(_case_ranges(ranges) if ignore_case else ranges)
    char = chr(code)
    if ignore_case and char.lower() != char.upper():
        raise RegexError(f"case-insensitive matching of the non-ASCII letter {char!r} is not supported")
    return _seq([_bytes([(b, b)]) for b in char.encode("utf-8")])


class _Converter:
    def __init__(self, flags: int):
        self.flags = flags

    def convert(self, parsed, flags: int) -> _Node:
        return _seq([self.item(op, av, flags) for op, av in parsed])

    def item(self, op, av, flags: int) -> _Node:
        ignore_case = bool(flags & re.IGNORECASE)
        if op is C.LITERAL:
            return _literal(av, ignore_case)
        if op is C.NOT_LITERAL:
            return self.char_class([(C.NEGATE, None), (C.LITERAL, av)], flags)
        if op is C.ANY:
            return _any_character([(0, 0x7F)] if flags & re.DOTALL else [(0, 0x09), (0x0B, 0x7F)])
        if op is C.IN:
            return self.char_class(av, flags)
        if op is C.BRANCH:
            return _alt([self.convert(branch, flags) for branch in av[1]])
        if op is C.SUBPATTERN:
            _group, add_flags, del_flags, pattern = av
            return self.convert(pattern, (flags | add_flags) & ~del_flags)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            low, high, pattern = av
            return _Node("repeat", items=[self.convert(pattern, flags)], low=low,
                         high=None if high == C.MAXREPEAT else high)
        if op is C.AT:
            multiline = bool(flags & re.MULTILINE)
            kinds = {
                C.AT_BEGINNING: LINE_START if multiline else TEXT_START, C.AT_BEGINNING_STRING: TEXT_START,
                C.AT_END: LINE_END if multiline else TEXT_END, C.AT_END_STRING: TEXT_END,
                C.AT_BOUNDARY: WORD_BOUNDARY, C.AT_NON_BOUNDARY: NOT_WORD_BOUNDARY,
            }
            if av not in kinds:
                raise RegexError(f"the anchor {av} is not supported")
            return _Node("assert", assertion=kinds[av])
        raise RegexError(f"{str(op).lower().replace('_', ' ')} is not supported")

    def char_class(self, items, flags: int) -> _Node:
        negate = False
        ranges: list = []
        sequences: list = []
        for op, av in items:
            if op is C.NEGATE:
                negate = True
            elif op is C.LITERAL:
                if av < 0x80:
                    ranges.append((av, av))
                else:
                    sequences.append(_literal(av, bool(flags & re.IGNORECASE)))
            elif op is C.RANGE:
                low, high = av
                if high >= 0x80:
                    raise RegexError("character ranges beyond ASCII are not supported")
                ranges.append((low, high))
            elif op is C.CATEGORY:
                category, inverted = _CATEGORIES.get(av, (None, False))
                if category is None:
                    raise RegexError(f"the class {av} is not supported")
                if inverted:
                    if len(items) > 1 and not negate:
                        raise RegexError("negated classes like \\D inside [...] are not supported")
                    negate = not negate
                ranges.extend(category)
            else:
                raise RegexError(f"{op} inside [...] is not supported")
        if flags & re.IGNORECASE:
            ranges = _case_ranges(ranges)
        if negate:
            if sequences:
                raise RegexError("non-ASCII characters in a negated class are not supported")
            return _any_character(_complement_ascii(ranges))
        options = ([_bytes(ranges)] if ranges else []) + sequences
        if not options:
            return _bytes([])  # matches nothing
        return options[0] if len(options) == 1 else _alt(options)


class _Program:
    """Thompson construction: each fragment is (start pc, list of holes to patch with the next pc)."""

    def __init__(self):
        self.code: list[list] = []

    def emit(self, instruction: list) -> int:
        if len(self.code) >= MAX_INSTRUCTIONS:
            raise RegexError(f"the expression is too large (more than {MAX_INSTRUCTIONS} matcher steps); "
                             "simplify it or lower the repetition counts")
        self.code.append(instruction)
        return len(self.code) - 1

    def compile(self, node: _Node) -> tuple[int, list]:
        if node.kind == "bytes":
            pc = self.emit([CHAR, None, *[b for pair in node.ranges for b in pair]])
            return pc, [(pc, 1)]
        if node.kind == "assert":
            pc = self.emit([ASSERT, None, node.assertion])
            return pc, [(pc, 1)]
        if node.kind == "seq":
            if not node.items:
                pc = self.emit([JUMP, None])
                return pc, [(pc, 1)]
            start, holes = self.compile(node.items[0])
            for item in node.items[1:]:
                next_start, next_holes = self.compile(item)
                self.patch(holes, next_start)
                holes = next_holes
            return start, holes
        if node.kind == "alt":
            if len(node.items) == 1:
                return self.compile(node.items[0])
            first, first_holes = self.compile(node.items[0])
            rest, rest_holes = self.compile(_alt(node.items[1:]))
            pc = self.emit([SPLIT, first, rest])
            return pc, first_holes + rest_holes
        if node.kind == "repeat":
            return self.repeat(node)
        raise AssertionError(node.kind)

    def repeat(self, node: _Node) -> tuple[int, list]:
        body = node.items[0]
        parts: list = [body] * node.low
        start: Optional[int] = None
        holes: list = []

        def append(fragment):
            nonlocal start, holes
            if start is None:
                start, holes = fragment
            else:
                self.patch(holes, fragment[0])
                holes = fragment[1]

        for part in parts:
            append(self.compile(part))
        if node.high is None:
            loop_body, loop_holes = self.compile(body)
            split = self.emit([SPLIT, loop_body, None])
            self.patch(loop_holes, split)
            append((split, [(split, 2)]))
        else:
            optional = node.high - node.low
            tail_holes: list = []
            for _ in range(optional):
                piece, piece_holes = self.compile(body)
                split = self.emit([SPLIT, piece, None])
                append((split, piece_holes))
                tail_holes.append((split, 2))
            holes = holes + tail_holes if optional else holes
        if start is None:  # x{0}
            pc = self.emit([JUMP, None])
            return pc, [(pc, 1)]
        return start, holes

    def patch(self, holes: list, target: int) -> None:
        for pc, slot in holes:
            self.code[pc][slot] = target


@lru_cache(maxsize=512)
def re2_compile(pattern: str):
    """The RE2 expression (what Envoy runs for Istio's ``regex`` matches); RegexError when invalid.
    re2 is imported on first use: commands that never match a regex start faster."""
    import re2  # type: ignore[import-untyped]

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except Exception as exc:  # re2.error carries the message as bytes
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise RegexError(f"not a valid RE2 regular expression: {detail}") from None


def compile_regex(pattern: str) -> list[list[int]]:
    """The NFA program (instructions with 1-based targets, as LUA_MATCHER runs them) for an RE2 full match."""
    if not isinstance(pattern, str):
        raise RegexError("must be a string")
    re2_compile(pattern)
    if re.search(r"\[\[?:\^?[a-z]+:\]", pattern):
        raise RegexError("POSIX classes like [[:alpha:]] are not supported; write the range, e.g. [a-zA-Z]")
    try:
        parsed = sre_parse.parse(pattern)
    except Exception as exc:  # re.error
        raise RegexError(f"uses syntax the coloring filter does not support: {exc}") from None
    flags = parsed.state.flags
    if flags & re.VERBOSE:
        raise RegexError("the x (verbose) flag is not supported")
    root = _Converter(flags).convert(parsed, flags)
    program = _Program()
    start, holes = program.compile(root)
    match_pc = program.emit([MATCH])
    program.patch(holes, match_pc)
    # 1-based for Lua, with the entry point first: a leading jump when the start is not instruction 0.
    shift = 1 if start == 0 else 2
    code = program.code if start == 0 else [[JUMP, start]] + program.code
    result = []
    for index, instruction in enumerate(code):
        op = instruction[0]
        if op == MATCH:
            result.append([MATCH])
        elif start != 0 and index == 0:
            result.append([JUMP, start + shift])
        elif op == SPLIT:
            result.append([op, instruction[1] + shift, instruction[2] + shift])
        else:
            result.append([op, instruction[1] + shift, *instruction[2:]])
    return result


def lua_program(pattern: str) -> str:
    """The program as a Lua table constructor (numbers only)."""
    return "{" + ",".join("{" + ",".join(str(x) for x in ins) + "}" for ins in compile_regex(pattern)) + "}"


def run_program(program: list[list[int]], text: str) -> bool:
    """The same Pike VM in Python, for tests that compare it with RE2 and with the Lua matcher."""
    data = text.encode("utf-8")
    n = len(data)

    def is_word(byte: Optional[int]) -> bool:
        return byte is not None and (48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122 or byte == 95)

    def add(states: list, seen: set, pc: int, i: int) -> None:
        stack = [pc]
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            ins = program[pc - 1]
            op = ins[0]
            if op == SPLIT:
                stack.extend((ins[2], ins[1]))
            elif op == JUMP:
                stack.append(ins[1])
            elif op == ASSERT:
                prev = data[i - 2] if i > 1 else None
                cur = data[i - 1] if i <= n else None
                kind = ins[2]
                ok = {TEXT_START: i == 1, TEXT_END: i == n + 1, LINE_START: i == 1 or prev == 10,
                      LINE_END: i == n + 1 or cur == 10}.get(kind)
                if ok is None:
                    boundary = is_word(prev) != is_word(cur)
                    ok = boundary if kind == WORD_BOUNDARY else not boundary
                if ok:
                    stack.append(ins[1])
            else:
                states.append(pc)

    states: list = []
    add(states, set(), 1, 1)
    for i in range(1, n + 1):
        byte = data[i - 1]
        following: list = []
        seen: set = set()
        for pc in states:
            ins = program[pc - 1]
            if ins[0] == CHAR and any(ins[j] <= byte <= ins[j + 1] for j in range(2, len(ins), 2)):
                add(following, seen, ins[1], i + 1)
        states = following
        if not states:
            return False
    return any(program[pc - 1][0] == MATCH for pc in states)


# The matcher the generated Lua carries when a rule uses a regex. Works in Envoy's LuaJIT and in plain
# Lua 5.1; uses only string.byte.
LUA_MATCHER = """\
local function re_is_word(b)
  return b ~= nil and ((b >= 48 and b <= 57) or (b >= 65 and b <= 90) or (b >= 97 and b <= 122) or b == 95)
end

-- Full match of s against an NFA program made by graylane (a Pike VM: linear time, no backtracking).
local function re_full_match(prog, s)
  if s == nil then return false end
  local n = #s
  local function add(list, seen, pc, i)
    if seen[pc] then return end
    seen[pc] = true
    local ins = prog[pc]
    local op = ins[1]
    if op == 2 then
      add(list, seen, ins[2], i)
      add(list, seen, ins[3], i)
    elseif op == 5 then
      add(list, seen, ins[2], i)
    elseif op == 3 then
      local kind = ins[3]
      local prev = i > 1 and string.byte(s, i - 1) or nil
      local cur = i <= n and string.byte(s, i) or nil
      local ok
      if kind == 1 then ok = (i == 1)
      elseif kind == 2 then ok = (i == n + 1)
      elseif kind == 3 then ok = (i == 1 or prev == 10)
      elseif kind == 4 then ok = (i == n + 1 or cur == 10)
      else
        local boundary = re_is_word(prev) ~= re_is_word(cur)
        if kind == 5 then ok = boundary else ok = not boundary end
      end
      if ok then add(list, seen, ins[2], i) end
    else
      list[#list + 1] = pc
    end
  end
  local states = {}
  add(states, {}, 1, 1)
  for i = 1, n do
    local c = string.byte(s, i)
    local following, seen = {}, {}
    for _, pc in ipairs(states) do
      local ins = prog[pc]
      if ins[1] == 1 then
        for j = 3, #ins, 2 do
          if c >= ins[j] and c <= ins[j + 1] then
            add(following, seen, ins[2], i + 1)
            break
          end
        end
      end
    end
    states = following
    if #states == 0 then return false end
  end
  for _, pc in ipairs(states) do
    if prog[pc][1] == 4 then return true end
  end
  return false
end
"""
