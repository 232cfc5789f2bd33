"""A hop in front of the test S3 server that checks upload checksums as AWS S3 does.

moto_server stores any `x-amz-checksum-sha256` it is given without checking it
(moto/s3/responses.py, `_get_checksum`: "TODO: AWS computes the checksum"), so a client
sending the SHA-256 of another body passed every test. This hop receives each request
body whole (a server can only refuse a body once it has all of it), recomputes its
digests, and refuses a mismatch with the error AWS S3 answers, before the server sees it:

  * `x-amz-checksum-sha256` (header, or trailer of an `aws-chunked` body) against the
    SHA-256 of the payload: 400 BadDigest;
  * `Content-MD5` against the MD5 of the payload: 400 BadDigest;
  * a hex `x-amz-content-sha256` (the payload hash signed by SigV4) against the SHA-256
    of the body as sent: 400 XAmzContentSHA256Mismatch.

Everything else is forwarded unchanged, and answers are streamed back.
`refuse = False` plays a lenient server that stores what it is given, while `mismatches`
still records what a checking server would have refused (a client's lie is then visible
even where the server behind keeps quiet). `alter_uploads = n` flips one byte of the
next n request bodies on their way in, after the client computed its checksums: an
upload altered in transit. Loopback only.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import socketserver
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler

_MESSAGES = {
    ("BadDigest", "sha256"): "The SHA256 you specified did not match the calculated checksum.",
    ("BadDigest", "md5"): "The Content-MD5 you specified did not match what we received.",
    ("XAmzContentSHA256Mismatch", "content-sha256"):
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
}
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_STREAM_BLOCK = 1 << 16


class BadRequestBody(ValueError):
    pass


def decode_aws_chunked(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The payload and the trailers of an `aws-chunked` body (`size[;chunk-signature=...]`
    CRLF, data, CRLF ..., a zero-size chunk, then `name:value` trailer lines)."""
    payload = bytearray()
    position = 0
    while True:
        end = body.find(b"\r\n", position)
        if end < 0:
            raise BadRequestBody("aws-chunked body without a chunk header")
        size = int(body[position:end].split(b";", 1)[0], 16)
        position = end + 2
        if size == 0:
            break
        payload += body[position:position + size]
        position += size + 2
    trailers = {}
    for line in body[position:].split(b"\r\n"):
        if b":" in line:
            name, value = line.split(b":", 1)
            trailers[name.strip().lower().decode("ascii")] = value.strip().decode("ascii")
    return bytes(payload), trailers


def mismatch(headers: dict[str, str], body: bytes) -> tuple[str, str] | None:
    """(error code, what disagreed) as AWS S3 would refuse this request body, or None.
    `headers` lower-cased."""
    payload, claims = body, dict(headers)
    if "aws-chunked" in headers.get("content-encoding", ""):
        payload, trailers = decode_aws_chunked(body)
        claims.update(trailers)
    claimed = claims.get("x-amz-checksum-sha256")
    if claimed is not None and base64.b64encode(hashlib.sha256(payload).digest()).decode("ascii") != claimed:
        return "BadDigest", "sha256"
    claimed = claims.get("content-md5")
    if claimed is not None and base64.b64encode(hashlib.md5(payload).digest()).decode("ascii") != claimed:
        return "BadDigest", "md5"
    claimed = headers.get("x-amz-content-sha256", "")
    if _HEX_SHA256.match(claimed) and hashlib.sha256(body).hexdigest() != claimed:
        return "XAmzContentSHA256Mismatch", "content-sha256"
    return None


class ChecksumCheckingProxy:
    def __init__(self, upstream_port: int, *, refuse: bool = True) -> None:
        self.upstream_port = upstream_port
        self.refuse = refuse
        self.alter_uploads = 0
        self.counts: Counter = Counter()  # "checked" bodies, "altered", and each refusal's code
        self.mismatches: list[tuple[str, str, str]] = []  # (method, path, code) of each disagreeing body
        self._lock = threading.Lock()
        hop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";", 1)[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length", 0) or 0)
                return self.rfile.read(length) if length else b""

            def _refuse(self, code: str, what: str) -> None:
                payload = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>"
                           f"<Message>{_MESSAGES[code, what]}</Message><Resource>{self.path}</Resource>"
                           f"</Error>").encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _drop(self) -> None:
                """The server behind failed (reset, closed, stalled): so does this hop, with
                no answer of its own and no second try that would hide the fault."""
                self.close_connection = True
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass  # the client is gone already

            def _handle(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"}
                if body:
                    with hop._lock:
                        alter = hop.alter_uploads > 0
                        hop.alter_uploads -= alter
                    if alter:  # altered on the wire, after the client computed its checksums
                        position = len(body) // 2
                        body = body[:position] + bytes((body[position] ^ 0x01,)) + body[position + 1:]
                        with hop._lock:
                            hop.counts["altered"] += 1
                    found = mismatch({k.lower(): v for k, v in headers.items()}, body)
                    with hop._lock:
                        hop.counts["checked"] += 1
                        if found is not None:
                            hop.mismatches.append((self.command, self.path, found[0]))
                            hop.counts[found[0]] += 1
                    if found is not None and hop.refuse:
                        self._refuse(*found)
                        return
                    headers["Content-Length"] = str(len(body))
                # One connection per request, as the agent's own: nothing kept that could go stale.
                upstream = http.client.HTTPConnection("127.0.0.1", hop.upstream_port, timeout=120)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    self.send_response_only(response.status, response.reason)
                    length = response.getheader("Content-Length")
                    for key, value in response.getheaders():
                        if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                            self.send_header(key, value)
                    if self.command == "HEAD" or length is not None:
                        self.send_header("Content-Length", length or "0")
                        self.end_headers()
                        while self.command != "HEAD" and (block := response.read(_STREAM_BLOCK)):
                            self.wfile.write(block)
                    else:  # no length announced: read it all to announce one
                        data = response.read()
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                except (OSError, http.client.HTTPException):
                    self._drop()
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 64

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "ChecksumCheckingProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "ChecksumCheckingProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
