"""A local OpenAI-compatible chat completions server for tests and benchmarks (127.0.0.1, random port).

    with OpenAIStub(["Hello. TERMINATE"]) as stub:
        ...  # ModelConfig(provider="openai", base_url=stub.base_url, model="stub-model", ...)
        stub.requests  # [{"headers": {lower-case name: value}, "body": {...}}] in arrival order

Each scripted reply is a string (assistant text), {"tool_calls": [{"name", "arguments"}]},
{"status": 500, "message": "..."} (an error answer), or {"hold": threading.Event, "text": ...}
(the answer waits until the event is set: a slow model). Streaming requests get SSE chunks and,
with stream_options.include_usage, a final usage chunk.

For benchmarks: `latency` (seconds) delays every answer, each request in its own thread, so that
hundreds of requests wait at once; `default` answers every request after the scripted ones;
`keep_requests=False` records nothing but the counters (`served`, `in_flight`, `peak_in_flight`),
which `GET /stub/stats` also returns. As a process of its own (what bench/bench_scale.py starts):

    python tests/openai_stub.py --latency 2 --reply "Done. TERMINATE"   # prints its base URL, serves until killed
"""
import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # hundreds of clients connect at once: the default backlog of 5 drops SYNs

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away before the answer (a cancelled task): nothing to report
        super().handle_error(request, client_address)

MODEL_INFO = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown", "structured_output": False}


class OpenAIStub:
    def __init__(self, replies=None, *, port: int = 0, latency: float = 0.0, default="(no more replies)", keep_requests: bool = True):
        self.replies = list(replies or [])
        self.latency = latency
        self.default = default
        self.keep_requests = keep_requests
        self.requests: list[dict] = []
        self.served = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._next = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/stub/stats":
                    self.send_error(404)
                    return
                payload = json.dumps(stub.stats()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    if stub.keep_requests:
                        stub.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "path": self.path})
                    reply = stub.replies[stub._next] if stub._next < len(stub.replies) else stub.default
                    stub._next += 1
                    stub.in_flight += 1
                    stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                try:
                    if stub.latency:
                        time.sleep(stub.latency)
                    stub._answer(self, body, reply)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1
                        stub.served += 1

        self.server = _Server(("127.0.0.1", port), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def stats(self) -> dict:
        with self._lock:
            return {"served": self.served, "in_flight": self.in_flight, "peak_in_flight": self.peak_in_flight, "latency": self.latency}

    def reset_peak(self) -> None:
        with self._lock:
            self.peak_in_flight = self.in_flight

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, handler, body, reply):
        if isinstance(reply, dict) and "hold" in reply:
            reply["hold"].wait(reply.get("timeout", 60))
            reply = reply.get("text", "done")
        if isinstance(reply, dict) and "status" in reply:
            payload = json.dumps({"error": {"message": reply.get("message", "stub error"), "type": "server_error"}}).encode()
            handler.send_response(reply["status"])
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        text = reply if isinstance(reply, str) else None
        calls = [] if text is not None else [
            {"id": f"call_{i}", "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
            for i, c in enumerate(reply["tool_calls"])
        ]
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        completion_tokens = len((text or "").split()) + len(calls) * 5
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        finish = "tool_calls" if calls else "stop"
        base = {"id": "chatcmpl-stub", "created": int(time.time()), "model": body.get("model", "stub-model")}
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = calls
            payload = json.dumps(
                {**base, "object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}
            ).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()

        def chunk(delta, finish_reason=None, **extra):
            data = {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}
            handler.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            handler.wfile.flush()

        if calls:
            chunk({"role": "assistant", "tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
        else:
            words = text.split(" ")
            for i, word in enumerate(words):
                chunk({"role": "assistant", "content": word + (" " if i < len(words) - 1 else "")})
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            data = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            handler.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()
        handler.close_connection = True


def main() -> None:
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible stub model; prints its base URL.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--reply", default="Done. TERMINATE", help="the answer to every request")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args()
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per waiting request
    stub = OpenAIStub(port=args.port, latency=args.latency, default=args.reply, keep_requests=False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(stub.base_url, flush=True)
    try:
        stub.server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stub.server.server_close()


if __name__ == "__main__":
    main()
