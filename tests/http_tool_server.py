"""A real local HTTP endpoint for HTTP tool tests: a threaded http.server that records every request and
answers by path: /slow sleeps 3 s before answering, /status/NNN answers NNN (a 3xx to the cloud metadata address), /big answers 100 KB, anything
else answers 200 with a JSON echo of what it got (method, path, query, body; headers only when the path
starts with /headers, like an endpoint that echoes them)."""
import json
import threading
import time
from urllib.parse import urlsplit

from tests.local_http import LocalHTTPServer, QuietHandler


class ToolServer(LocalHTTPServer):
    def __init__(self):
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                seen = {"method": self.command, "path": parts.path, "query": parts.query,
                        "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode()}
                with server._lock:
                    server.requests.append(seen)
                status, payload = 200, {k: v for k, v in seen.items() if k != "headers"}
                if parts.path.startswith("/headers"):
                    payload["headers"] = seen["headers"]
                if parts.path == "/slow":
                    time.sleep(3)
                if parts.path.startswith("/status/"):
                    status, payload = int(parts.path.rsplit("/", 1)[1]), {"error": "no such order"}
                data = b"x" * 100_000 if parts.path == "/big" else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    if 300 <= status < 400:
                        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the caller gave up (a timeout)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        self.serve(Handler)
        self.base = self.origin
