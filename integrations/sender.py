"""One webhook POST, made from a delivery worker: the host must resolve to public addresses (unless
WEBHOOKS_ALLOW_PRIVATE), the connection goes to the very address that was checked, redirects are
not followed, and the whole exchange ends within WEBHOOK_TIMEOUT_SECONDS."""
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from runtime.broker import public_addresses

# Enough of a response body to show in the deliveries list; the rest is not read.
RESPONSE_KEEP_BYTES = 1024
RESPONSE_READ_BYTES = 64 * 1024
USER_AGENT = "autogen-platform-webhooks/1"


class Refused(Exception):
    """The URL is not one the platform calls (a private address, not http(s), unresolvable)."""


@dataclass
class Response:
    status: int | None
    latency_ms: int
    error: str = ""
    timed_out: bool = False


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict, *, timeout: float, allow_private: bool) -> Response:
    refusal, addresses = public_addresses(url, allow_private=allow_private)
    if refusal:
        raise Refused(refusal)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    cls = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    conn = cls(parts.hostname, port, addresses[0], timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # A server that trickles its answer cannot hold the worker past the timeout: the socket is shut.
    watchdog = threading.Timer(timeout, _shut, args=(conn,))
    watchdog.daemon = True
    started = time.monotonic()
    watchdog.start()
    try:
        conn.request("POST", path, body=body, headers={
            **headers, "Content-Type": "application/json", "User-Agent": USER_AGENT, "Connection": "close",
        })
        response = conn.getresponse()
        response.read(RESPONSE_READ_BYTES)
        status = response.status
        error = "" if 200 <= status < 300 else f"HTTP {status}" + (
            f" (redirect to {response.getheader('Location', '')[:200]!r} not followed)" if 300 <= status < 400 else "")
        return Response(status, _ms(started), error)
    except (OSError, http.client.HTTPException) as exc:
        elapsed = time.monotonic() - started
        timed_out = elapsed >= timeout * 0.98
        reason = f"no answer within {timeout:g} s" if timed_out else f"{type(exc).__name__}: {exc}"
        return Response(None, _ms(started), reason[:500], timed_out=timed_out)
    finally:
        watchdog.cancel()
        conn.close()


def _shut(conn) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
