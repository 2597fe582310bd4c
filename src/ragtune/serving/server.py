"""`ragtune serve`: one process keeps the model and the index loaded and answers search over HTTP.

A `ragtune search` pays its start-up (imports, the model, Milvus Lite) for milliseconds of work;
the server pays it once. `POST /search {"query": str, "k"?: int, "mode"?: recorded|dense|hybrid}`
answers the ranked passages with their scores and the view they came from; `GET /healthz` says
what is served. A bad request gets a 4xx JSON error naming the field; a failure inside gets a 500
JSON error of one line, never a traceback. Searches run one at a time: they share the model and
the Milvus Lite client, and on a few cores concurrent encodes would only contend.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ragtune.errors import UserError
from ragtune.retrieval.fusion import mode_name

MAX_BODY = 64 * 1024  # bytes of one request; a question is far shorter
MAX_K = 1000
MODES = ("recorded", "dense", "hybrid")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def body_length(header: str | None) -> int:
    """Bytes to read from a Content-Length header: a 400 if it is not a count, a 413 if it is too many."""
    text = (header or "0").strip()
    if not text.isdigit():
        raise BadRequest(400, f"Content-Length {text!r}: not a byte count")
    if int(text) > MAX_BODY:
        raise BadRequest(413, f"the body is {text} bytes; at most {MAX_BODY}")
    return int(text)


def parse_search(body: bytes, default_k: int) -> tuple[str, int, str | None]:
    """(query, k, mode) of a /search body, or BadRequest naming the field and what it takes."""
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest(400, 'the body is not UTF-8 JSON; send {"query": "...", "k": 10}') from None
    if not isinstance(request, dict):
        raise BadRequest(400, 'the body must be a JSON object: {"query": "...", "k": 10}')
    unknown = sorted(set(request) - {"query", "k", "mode"})
    if unknown:
        raise BadRequest(400, f"unknown field {unknown[0]!r}; fields: query, k, mode")
    query = request.get("query")
    if not isinstance(query, str) or not query.strip():
        raise BadRequest(400, "query: a non-empty string is required")
    k = request.get("k", default_k)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise BadRequest(400, f"k: an integer in 1-{MAX_K} is required")
    mode = request.get("mode")
    if mode is not None and mode not in MODES:
        raise BadRequest(400, f"mode: one of {', '.join(MODES)}")
    return query, k, mode


def free_port(host: str, port: int) -> int:
    """`port` if it can be bound on `host` now (0: any free one); else one line naming the flag and the fix."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port}: not a port number; pass one in 1-65535 (0: any free port)")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
            return probe.getsockname()[1]
    except OSError as exc:
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); pass another --port or --host"
        ) from None


def handler_for(retriever, default_k: int) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()
    health = {"status": "ok", "repo": str(retriever.repo), "view": retriever.view.name, "mode": retriever.mode}

    class Handler(BaseHTTPRequestHandler):
        server_version = "ragtune"
        protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection

        def log_message(self, format, *args):  # noqa: A002 (the base class's name) - one line per request is noise
            pass

        def reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/healthz":
                self.reply(200, health)
            else:
                self.reply(404, {"error": f"{self.path}: not found; GET /healthz or POST /search"})

        def do_POST(self):
            try:
                if self.path != "/search":
                    raise BadRequest(404, f"{self.path}: not found; POST /search or GET /healthz")
                length = body_length(self.headers.get("Content-Length"))
                query, k, mode = parse_search(self.rfile.read(length), default_k)
                with lock:
                    try:
                        served = mode_name(retriever.weight_for(mode))
                        hits = retriever.search(query, k, mode)
                    except UserError as exc:  # hybrid asked of a view without a keyword side or a weight
                        raise BadRequest(400, str(exc)) from None
                self.reply(200, {"view": retriever.view.name, "mode": served, "hits": [asdict(h) for h in hits]})
            except BadRequest as exc:  # the body may be unread: this connection ends with the reply
                self.close_connection = True
                self.reply(exc.status, {"error": str(exc)})
            except Exception as exc:  # a failure inside: one line to the client and to the server's log
                print(f"error: POST {self.path}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                self.close_connection = True
                self.reply(500, {"error": f"{type(exc).__name__}: {exc}"})

    return Handler


def serve(retriever, host: str, port: int, default_k: int) -> int:
    """Answer until SIGTERM or Ctrl-C."""
    server = ThreadingHTTPServer((host, port), handler_for(retriever, default_k))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    print(
        f"serving {retriever.repo}:{retriever.view.name} ({retriever.mode}) on http://{host}:{port} "
        "(POST /search, GET /healthz; Ctrl-C to stop)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
