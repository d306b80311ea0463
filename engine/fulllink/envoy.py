"""Runs Envoy HTTP Lua filter code (``envoy_on_request``) against a request, without Envoy.

The emulation of Envoy's stream handle API lives in ``envoy_emulation.lua``, a trusted driver that runs
in graylane's sandbox on LuaJIT (the runtime Envoy embeds) and loads the filter code with
``loadstring(code, "=inlineCode")``, so errors carry the line of the inline code. It covers what traffic
coloring needs: ``headers()`` (get/getAtIndex/getNumValues/add/replace/remove/pairs), ``streamInfo()``,
``connection()``, ``metadata()``, the log functions, ``clearRouteCache()``, ``respond()`` and
``body()`` (always nil: requests are header-only here). Not emulated: ``httpCall``, bodies, responses
(``envoy_on_response`` is never called), and the os/io libraries Envoy's LuaJIT would offer.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional
from urllib.parse import urlsplit

from engine.errors import InvalidInputError, ScriptError
from engine.lua.sandbox import LuaSandbox, Script, printable

PSEUDO_HEADERS = (":authority", ":path", ":method", ":scheme")
MAX_LOGS, MAX_LOG_TEXT = 1000, 4000
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")


@dataclass
class HttpRequest:
    """A request as a proxy sees it: pseudo-headers plus ordinary headers (names lowercase)."""

    method: str = "GET"
    authority: str = ""
    path: str = "/"
    scheme: str = "http"
    headers: list = field(default_factory=list)  # [(name, value)], no pseudo-headers

    @property
    def host(self) -> str:
        """The authority without a port."""
        authority = self.authority
        if authority.startswith("["):
            return authority.split("]", 1)[0] + "]"
        return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority

    @property
    def port(self) -> Optional[int]:
        if self.authority.count(":") == 1 and not self.authority.startswith("["):
            text = self.authority.rsplit(":", 1)[1]
            return int(text) if text.isdigit() else None
        return None

    def all_headers(self) -> list:
        return [(":authority", self.authority), (":path", self.path), (":method", self.method),
                (":scheme", self.scheme), *self.headers]

    def header(self, name: str) -> Optional[str]:
        """All values of a header joined by "," (as Envoy's get()), or None."""
        name = name.lower()
        values = [value for key, value in self.all_headers() if key == name]
        return ",".join(values) if values else None

    def with_headers(self, all_headers: list) -> "HttpRequest":
        """A copy whose pseudo-headers and headers come from a header list (what the filter left)."""
        pseudo = {key: value for key, value in all_headers if key in PSEUDO_HEADERS}
        return HttpRequest(pseudo.get(":method", self.method), pseudo.get(":authority", self.authority),
                           pseudo.get(":path", self.path), pseudo.get(":scheme", self.scheme),
                           [(k, v) for k, v in all_headers if k not in PSEUDO_HEADERS])

    def describe(self) -> str:
        return f"{self.method} {self.scheme}://{self.authority}{self.path}"


def parse_request(line: str, header_lines: Optional[list] = None) -> HttpRequest:
    """``'GET http://host/path?q=1'`` (the method is optional) and ``['name: value', ...]``."""
    parts = line.strip().split(None, 1)
    if not parts:
        raise InvalidInputError("--request needs a URL, e.g. 'GET http://example.com/'")
    method = "GET"
    if len(parts) == 2:
        method, url = parts[0].upper(), parts[1].strip()
        if method not in METHODS:
            raise InvalidInputError(f"--request: unknown method {parts[0]!r}; expected one of {', '.join(METHODS)}")
    else:
        url = parts[0]
    if "://" not in url:
        url = "http://" + url
    try:
        split = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        raise InvalidInputError(f"--request: {url!r} is not a valid URL: {exc}") from None
    if split.scheme not in ("http", "https") or not split.netloc:
        raise InvalidInputError(f"--request: {url!r} is not an http(s) URL with a host")
    if "@" in split.netloc:
        raise InvalidInputError("--request: user information in the URL is not supported")
    path = split.path or "/"
    if split.query:
        path += "?" + split.query
    headers = [parse_header(text) for text in header_lines or []]
    return HttpRequest(method, split.netloc.lower(), path, split.scheme, headers)


def parse_header(text: str) -> tuple:
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n"):
        raise InvalidInputError(f"-H {text!r}: expected 'name: value'")
    if name.startswith(":") or name.lower() == "host":
        raise InvalidInputError(f"-H {text!r}: set the host and path with --request")
    if any(c in value for c in "\r\n\0"):
        raise InvalidInputError(f"-H {text!r}: header values cannot contain line breaks")
    return name.lower(), value.strip()


@dataclass
class LuaFilterResult:
    """What ``envoy_on_request`` did to a request."""

    request: HttpRequest  # the request after the filter (headers changed in place)
    before: HttpRequest
    logs: list = field(default_factory=list)  # [(level, message)]
    route_cache_cleared: int = 0
    local_reply: Optional[dict] = None  # {"headers": {...}, "body": ...} when respond() was called
    error: Optional[str] = None  # a runtime error: Envoy logs it and the request goes on
    has_on_request: bool = True

    def changes(self) -> list:
        """Header changes as (action, name, old, new): set, added, removed."""
        before, after = _grouped(self.before.all_headers()), _grouped(self.request.all_headers())
        changes: list[tuple] = []
        for name in list(before) + [n for n in after if n not in before]:
            old, new = before.get(name), after.get(name)
            if old == new:
                continue
            if old is None:
                changes.append(("added", name, None, ",".join(new or [])))
            elif new is None:
                changes.append(("removed", name, ",".join(old), None))
            else:
                changes.append(("set", name, ",".join(old), ",".join(new)))
        return changes


def _grouped(headers: list) -> dict:
    grouped: dict = {}
    for key, value in headers:
        grouped.setdefault(key, []).append(value)
    return grouped


class EnvoyLuaEmulator:
    """Runs filter code on LuaJIT in graylane's sandbox (time and memory limited)."""

    def __init__(self, timeout: float = 1.0, max_memory: int = 64 * 1024 * 1024):
        self.sandbox = LuaSandbox(timeout=timeout, max_memory=max_memory, runtime="luajit")
        source = resources.files("engine.fulllink").joinpath("envoy_emulation.lua").read_text(encoding="utf-8")
        self.driver = Script("envoy-emulation", source, "builtin:envoy_emulation.lua")

    def on_request(self, code: str, request: HttpRequest, origin: str = "inlineCode",
                   details: Optional[dict] = None) -> LuaFilterResult:
        """Run ``envoy_on_request`` of ``code``. A syntax error raises ScriptError (Envoy would reject the
        configuration); a runtime error is reported in the result, as Envoy logs it and goes on."""
        obj = {"code": code, "request": {"headers": [list(pair) for pair in request.all_headers()],
                                         **(details or {})}}
        try:
            value = self.sandbox.run(self.driver, obj).value
        except ScriptError as exc:
            raise ScriptError(origin, exc.message.replace("builtin:envoy_emulation.lua", "inlineCode"),
                              None, exc.reason) from None
        if value.get("syntaxError"):
            message = str(value["syntaxError"])
            line = None
            if message.startswith("inlineCode:"):
                head, _, rest = message[len("inlineCode:"):].partition(": ")
                if head.isdigit():
                    line, message = int(head), rest
            raise ScriptError(origin, f"does not compile: {message}", line, "syntax")
        headers = [(str(k), str(v)) for k, v in (value.get("headers") or [])]
        # What the filter logged reaches the terminal: capped and without raw control characters.
        logs = [(str(level), printable(str(message))[:MAX_LOG_TEXT])
                for level, message in (value.get("logs") or [])[:MAX_LOGS]]
        error = value.get("error")
        return LuaFilterResult(request.with_headers(headers), request, logs, int(value.get("clearRouteCache") or 0),
                               value.get("respond"), printable(str(error))[:MAX_LOG_TEXT] if error else error,
                               bool(value.get("hasOnRequest")))


_shared: Optional[EnvoyLuaEmulator] = None
_shared_lock = threading.Lock()


def shared_emulator() -> EnvoyLuaEmulator:
    """One emulator per process (a Lua state is costly to start)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EnvoyLuaEmulator()
        return _shared
