"""Refuses, with a 400 that says why, admin requests no route could use: NUL characters or bytes
that are not UTF-8 in the path, the query string or a form body.

PostgreSQL cannot store or compare a string holding NUL (the driver raises), and no admin
parameter, id or form field has a use for either, so they are stopped before any route runs.
A pure ASGI middleware: the event stream is not buffered.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_FORM_BYTES = 64 * 1024  # the admin's forms are a few fields; nothing needs more
FORM_TYPES = ("application/x-www-form-urlencoded",)


def problem(raw: bytes, where: str) -> str | None:
    """What is wrong with a percent-encoded path, query string or form body, or None."""
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    if b"\x00" in decoded:
        return f"the {where} contains a NUL character (%00), which no admin parameter accepts; remove it"
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return f"the {where} is not valid UTF-8 once percent-decoded; send text encoded as UTF-8"
    return None


class InputGuard:
    def __init__(self, app: ASGIApp, *, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == self.path or path.startswith(self.path + "/")):
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or path.encode("utf-8", "surrogateescape")
        message = problem(raw_path, "path") or problem(scope.get("query_string", b""), "query string")
        if message is None and scope.get("method") == "POST" and _is_form(scope):
            body, too_big = await _read_body(receive)
            if too_big:
                await _refuse(send, 413, f"the form body is larger than {MAX_FORM_BYTES} bytes")
                return
            message = problem(body, "form body")
            receive = _replay(body, receive)
        if message is not None:
            await _refuse(send, 400, message)
            return
        await self.app(scope, receive, send)


def _is_form(scope: Scope) -> bool:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1").lower().startswith(FORM_TYPES)
    return False


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, original: Receive) -> Receive:
    """The body read above, then the connection's own messages (a later disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
