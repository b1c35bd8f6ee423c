"""The door every request goes through (a plain ASGI middleware, ahead of FastAPI's body
parsing): the bearer token, the request-size limit, the bound on POST /infer requests
held open, and each request's count and latency for /metrics.

Checked in that order, before a byte of the body is read: a caller without the token
gets 401 and cannot take /infer slots; a request past `max_in_flight` requests being
served at once gets 503 with Retry-After (uvicorn's own bound, further up, would answer
a bare 503); a body over the limit gets 413 (at once from its Content-Length, or as soon
as it has sent too much); an /infer past the bound gets 429 with Retry-After.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import time
from collections.abc import Awaitable, Callable

from server.metrics import Metrics

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Open to anyone: the status page's shell (it holds no data), its script and style, the
# API's description and the liveness check. Everything else needs the token.
PUBLIC = {
    "/",
    "/favicon.ico",
    "/health",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
}
PUBLIC_PREFIXES = ("/static/",)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class BodyTooLarge(Exception):
    pass


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_body: int,
        max_waiting: int,
        max_in_flight: int,
        service,  # server.service.Service: counts the /infer requests held open
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body
        self.max_waiting = max_waiting
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # requests past the token check and not answered yet
        self.service = service
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        sent = {"code": 0}

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["code"] = message["status"]
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        try:
            await self._guarded(scope, receive, send_counted, method, path)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "other"
            self.metrics.requests.labels(method, label, str(sent["code"])).inc()
            self.metrics.latency.labels(method, label).observe(time.perf_counter() - started)

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        if self.token is None and not _loopback_host(scope):
            # no token: only this machine may call, and only by a loopback name (a page
            # elsewhere cannot reach it through a DNS name rebound to 127.0.0.1)
            self.metrics.rejected.labels("host").inc()
            await _answer(send, 403, "without OCRQ_API_TOKEN only loopback names are served")
            return
        if self.token is not None and not self._public(path) and not self._authorized(scope):
            self.metrics.rejected.labels("auth").inc()
            await _answer(
                send,
                401,
                "a bearer token is required (Authorization: Bearer ...)",
                [(b"www-authenticate", b'Bearer realm="ocrq"')],
            )
            return
        if self.in_flight >= self.max_in_flight and path != "/health":
            self.metrics.rejected.labels("connections").inc()
            retry = self.service.retry_after(self.in_flight)
            await _answer(
                send,
                503,
                f"{self.in_flight} requests are being served already: try again later",
                [(b"retry-after", str(retry).encode())],
            )
            return
        self.in_flight += 1
        try:
            await self._sized(scope, receive, send, method, path)
        finally:
            self.in_flight -= 1

    async def _sized(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str
    ) -> None:
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            self.metrics.rejected.labels("too_large").inc()
            await _answer(send, 413, f"request body over the limit of {self.max_body} bytes")
            return
        slot = method == "POST" and path == "/infer"
        if slot:
            if self.service.infer_waiting >= self.max_waiting:
                self.metrics.rejected.labels("overload").inc()
                retry = self.service.retry_after(self.service.infer_waiting)
                await _answer(
                    send,
                    429,
                    f"{self.service.infer_waiting} /infer requests are waiting already "
                    f"(limit {self.max_waiting}): try again later, or POST /batch_infer",
                    [(b"retry-after", str(retry).encode())],
                )
                return
            self.service.infer_waiting += 1
        try:
            await self._limited(scope, receive, send)
        finally:
            if slot:
                self.service.infer_waiting -= 1

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = {"read": 0, "over": False, "started": False}

        async def receive_limited() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > self.max_body:
                    state["over"] = True
                    raise BodyTooLarge()
            return message

        async def send_unless_over(message: Message) -> None:
            if state["over"]:
                return  # the app's answer to a body cut short: ours goes out instead
            state["started"] = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, receive_limited, send_unless_over)
        if state["over"] and not state["started"]:
            self.metrics.rejected.labels("too_large").inc()
            await _answer(send, 413, f"request body over the limit of {self.max_body} bytes")

    def _public(self, path: str) -> bool:
        return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
                    return True
        return False


def _loopback_host(scope: Scope) -> bool:
    """The request's Host names this machine's loopback (127.x.x.x, [::1], localhost)."""
    host = ""
    for name, value in scope.get("headers", []):
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            break
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
