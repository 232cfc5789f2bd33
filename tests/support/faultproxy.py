"""An HTTP proxy that breaks a share of S3 requests, between the agent and a real server.

Faults, each drawn per request with its own probability:
  * `error`: answer 500 InternalError or 503 SlowDown without forwarding;
  * `reset`: read part of the request, then reset the TCP connection (a dropped upload);
  * `corrupt`: flip one byte of an upload's body before forwarding it, or of a
    download's body after (altered in transit, either way);
  * `delay`: forward after a pause (a slow provider);
  * `stall`: forward, then hold the answer longer than the client's read timeout and
    drop the connection (a provider that stops answering mid-request).
`counts` records what was injected, so tests can prove faults really happened.

A server that checks uploads as AWS S3 does is the one behind it in every test
(tests/support/checkingproxy.py, in front of moto). `requests` records every request's
method and headers.

`skew_s` plays a server whose clock is that many seconds off: its `Date` headers say
so, and with `reject_skew` it refuses, as AWS S3 does, every request signed more than
15 minutes away from its time (403 RequestTimeTooSkewed).
"""

from __future__ import annotations

import http.client
import random
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

_ERROR_BODIES = {
    500: b"<Error><Code>InternalError</Code><Message>injected</Message></Error>",
    503: b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>",
}
MAX_SKEW_S = 15 * 60  # what AWS S3 tolerates between a request's signature time and its clock


class FaultProxy:
    def __init__(self, upstream_port: int, *, error: float = 0.0, reset: float = 0.0,
                 corrupt: float = 0.0, delay: float = 0.0, delay_s: float = 0.3, stall: float = 0.0,
                 stall_s: float = 3.0, skew_s: float = 0.0, reject_skew: bool = False, seed: int = 1) -> None:
        self.upstream_port = upstream_port
        self.rates = {"error": error, "reset": reset, "corrupt": corrupt, "delay": delay, "stall": stall}
        self.delay_s = delay_s
        self.stall_s = stall_s
        self.skew_s = skew_s
        self.reject_skew = reject_skew
        self.random = random.Random(seed)
        self.counts: Counter = Counter()
        self.enabled = True
        self.requests: list[tuple[str, dict]] = []  # (method, lower-cased headers) of each request
        self.paths: list[tuple[str, str]] = []  # (method, path) of each request
        self._lock = threading.Lock()
        self._forced: list[str] = []  # faults the next requests get (force)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def date_time_string(self, timestamp=None) -> str:  # the Date header: the server's clock
                return formatdate((timestamp or time.time()) + proxy.skew_s, usegmt=True)

            def _refuse_skewed(self) -> bool:
                if not (proxy.reject_skew and abs(proxy.skew_s) > MAX_SKEW_S):
                    return False
                server = time.time() + proxy.skew_s
                payload = (f"<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the "
                           f"request time and the current time is too large.</Message><RequestTime>"
                           f"{self.headers.get('X-Amz-Date', '')}</RequestTime><ServerTime>"
                           f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(server))}</ServerTime>"
                           f"<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds></Error>").encode()
                proxy.counts["skew_refused"] += 1
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return True

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                with proxy._lock:
                    proxy.requests.append((self.command, {k.lower(): v for k, v in self.headers.items()}))
                    proxy.paths.append((self.command, self.path))
                fault = proxy._draw()
                if fault == "reset":
                    self.rfile.read(length // 2)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else b""
                if self._refuse_skewed():
                    return
                if fault == "error":
                    status = proxy.random.choice((500, 503))
                    payload = _ERROR_BODIES[status]
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if fault == "delay":
                    time.sleep(proxy.delay_s)
                if fault == "corrupt" and self.command == "PUT" and body:
                    position = proxy.random.randrange(len(body))
                    body = body[:position] + bytes((body[position] ^ 0x40,)) + body[position + 1:]
                    proxy.counts["corrupt_upload"] += 1
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                if fault == "stall":
                    time.sleep(proxy.stall_s)
                    self.connection.close()
                    self.close_connection = True
                    upstream.close()
                    return
                if fault == "corrupt" and self.command == "GET" and len(data) > 0 and response.status < 300:
                    position = proxy.random.randrange(len(data))
                    data = data[:position] + bytes((data[position] ^ 0x40,)) + data[position + 1:]
                    proxy.counts["corrupt_download"] += 1
                if fault == "corrupt" and not (self.command in ("GET", "PUT") and (data or body)):
                    proxy.counts["corrupt"] -= 1  # nothing to corrupt: not counted
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(key, value)
                # A HEAD answer has no body but the object's length (its own Content-Length).
                length = response.getheader("Content-Length", "0") if self.command == "HEAD" else len(data)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def force(self, fault: str) -> None:
        """The next request gets `fault` whatever the draw (a campaign whose random draws
        missed a kind of fault still proves the agent copes with it)."""
        assert fault in self.rates, fault
        with self._lock:
            self._forced.append(fault)

    def _draw(self) -> str | None:
        if not self.enabled:
            return None
        with self._lock:
            if self._forced:
                fault = self._forced.pop(0)
                self.counts[fault] += 1
                return fault
            for fault, rate in self.rates.items():
                if rate and self.random.random() < rate:
                    self.counts[fault] += 1
                    return fault
        return None

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
