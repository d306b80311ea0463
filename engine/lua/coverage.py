"""Which lines of a Lua 5.1 script can run: the denominator of ``graylane test --coverage``.

Lua 5.1 has no API that lists the lines of nested functions, so the script is compiled (never run) and its
bytecode read: every line that holds an instruction the interpreter dispatches can run. Left out are
instructions the VM never dispatches on their own (the jump after a test or a generic ``for`` step, the
operand words of SETLIST and CLOSURE) and each function's implicit final ``return``, which the compiler adds
even after an explicit one. The sandbox's line hook reports exactly the lines of dispatched instructions,
so a script whose cases run every branch reaches 100%.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import lupa.lua51 as lua51

from engine.errors import ScriptError

_JMP, _EQ, _LT, _LE, _TEST, _TESTSET, _TFORLOOP, _SETLIST, _CLOSURE = 22, 23, 24, 25, 26, 27, 33, 34, 36
_SKIPS_NEXT_JUMP = {_EQ, _LT, _LE, _TEST, _TESTSET, _TFORLOOP}  # the VM follows the JMP's offset itself
_SIGNATURE = b"\x1bLua\x51\x00"

_dump = None


def executable_lines(source: str, origin: str) -> set[int]:
    """The line numbers of ``source`` that hold code which can run (``origin`` names it in errors)."""
    return _Reader(_bytecode(source, origin)).chunk_lines()


def _bytecode(source: str, origin: str) -> bytes:
    global _dump
    if _dump is None:  # a private state: compiling is all it ever does
        runtime = lua51.LuaRuntime(register_eval=False, register_builtins=False, encoding=None,
                                     unpack_returned_tuples=True)
        _dump = runtime.eval("function(source) local f, err = loadstring(source, '=script') "
                             "if not f then return nil, err end return string.dump(f), nil end")
    code, error = _dump(source.encode("utf-8"))
    if code is None:
        message = error.decode("utf-8", "replace")
        line = None
        if message.startswith("script:"):
            number, _, message = message[len("script:"):].partition(": ")
            line = int(number) if number.isdigit() else None
        raise ScriptError(origin, message, line, "syntax")
    return code


@dataclass
class _Proto:
    lines: set
    upvalues: int


class _Reader:
    def __init__(self, data: bytes):
        if data[:6] != _SIGNATURE:
            raise ValueError("not Lua 5.1 bytecode")
        little, int_size, size_t_size, instruction_size, number_size = data[6], data[7], data[8], data[9], data[10]
        order = "<" if little else ">"
        self._int = struct.Struct(order + {4: "i", 8: "q"}[int_size])
        self._size_t = struct.Struct(order + {4: "I", 8: "Q"}[size_t_size])
        self._instruction = struct.Struct(order + {4: "I", 8: "Q"}[instruction_size])
        self._number_size = number_size
        self._data, self._pos = data, 12

    def chunk_lines(self) -> set[int]:
        return self._function().lines

    def _take(self, size: int) -> bytes:
        start = self._pos
        self._pos += size
        return self._data[start:self._pos]

    def _read(self, fmt: struct.Struct) -> int:
        return fmt.unpack(self._take(fmt.size))[0]

    def _string(self) -> None:
        self._take(self._read(self._size_t))

    def _function(self) -> _Proto:
        self._string()  # source
        self._take(2 * self._int.size)  # linedefined, lastlinedefined
        upvalues = self._take(4)[0]  # nups, numparams, is_vararg, maxstacksize
        code = [self._read(self._instruction) for _ in range(self._read(self._int))]
        for _ in range(self._read(self._int)):  # constants
            kind = self._take(1)[0]
            if kind == 1:
                self._take(1)
            elif kind == 3:
                self._take(self._number_size)
            elif kind == 4:
                self._string()
        children = [self._function() for _ in range(self._read(self._int))]
        line_of = [self._read(self._int) for _ in range(self._read(self._int))]
        for _ in range(self._read(self._int)):  # local variable names and ranges
            self._string()
            self._take(2 * self._int.size)
        for _ in range(self._read(self._int)):  # upvalue names
            self._string()
        lines: set[int] = set()
        for child in children:
            lines |= child.lines
        pc, last = 0, len(code) - 1  # the last instruction is the implicit final return
        while pc < last:
            instruction = code[pc]
            opcode = instruction & 0x3F
            lines.add(line_of[pc])
            pc += 1
            if opcode in _SKIPS_NEXT_JUMP:
                pc += 1
            elif opcode == _SETLIST and (instruction >> 14) & 0x1FF == 0:
                pc += 1  # C = 0: the next word is the batch number
            elif opcode == _CLOSURE:
                pc += children[instruction >> 14].upvalues  # one MOVE/GETUPVAL per upvalue: operands
        return _Proto(lines, upvalues)
