"""A shaping TCP proxy: a practice's WAN link between a backup tool and the loopback S3 server.

    python bench/wan_proxy.py --listen 127.0.0.1:9001 --upstream 127.0.0.1:9000 \\
        --rtt-ms 50 --down-mbit 100 --up-mbit 20 --stats /tmp/wan.json
    python bench/wan_proxy.py --listen 127.0.0.1:9001 --upstream 127.0.0.1:9000 --profile fibre

The model, per direction ("up" is client -> server, i.e. uploads; "down" is server -> client):
  * one link per direction, shared by every connection: a FIFO that serialises bytes at the
    capped rate (`--up-mbit`, `--down-mbit`; 0 = uncapped). A chunk read from one side takes
    the link when the previous chunk (of any connection) has left it, and occupies it for
    len/rate seconds - the bottleneck router of a real access line;
  * a propagation delay of rtt/2 on every chunk after it has left the link, pipelined (the
    link keeps sending meanwhile), so a request-response costs one round trip plus the
    transfer time, like a real link, and a window of data in flight fills it;
  * a new connection pays one more round trip before its first byte reaches the server
    (the TCP handshake; plain HTTP here, so no TLS round trips - a real HTTPS endpoint adds
    one or two per new connection);
  * per connection and direction at most `--window-kib` bytes in flight (read from the
    sender and not yet delivered), as a TCP window would: one connection then reaches at
    most window/RTT (4 MiB / 50 ms = 84 MB/s), so a long fat link needs several
    connections or a large window, as in reality. Not modelled: TCP slow start, loss.
Counts: connections, HTTP requests by method (request lines parsed from the client's stream,
bodies skipped by Content-Length or chunked encoding), bytes delivered per direction. The
counters are cumulative: a caller takes a snapshot before and after a step and subtracts.
`--stats FILE` is rewritten (atomically, JSON) every 0.2 s and at exit.

Imported by bench/run.py (`WanProxy(...).start()` runs the proxy in a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter

CHUNK = 64 * 1024
PROFILES = {  # name: (down Mbit/s, up Mbit/s, round trip ms)
    "fibre": (100.0, 20.0, 50.0),  # a practice's fibre (FTTH with an asymmetric offer)
    "gigabit": (1000.0, 1000.0, 50.0),
}


class Link:
    """One direction of the link: a FIFO serialising bytes at `mbit`, then rtt/2 of propagation."""

    def __init__(self, mbit: float, one_way_s: float) -> None:
        self.rate = mbit * 1e6 / 8 if mbit > 0 else 0.0  # bytes per second; 0: uncapped
        self.one_way_s = one_way_s
        self.free_at = 0.0

    def schedule(self, size: int, now: float) -> float:
        """When `size` bytes put on the link now arrive at the other end."""
        if self.rate:
            self.free_at = max(now, self.free_at) + size / self.rate
            leaves = self.free_at
        else:
            leaves = now
        return leaves + self.one_way_s


class Request:
    """One request seen in a client's stream; `method` is known once its request line is parsed."""

    def __init__(self) -> None:
        self.method = ""


class RequestParser:
    """Finds HTTP/1.x requests in a client's byte stream and counts them by method: request
    line and headers, then the body skipped (not copied) by Content-Length or chunked
    transfer encoding. `feed` returns where in the data each new request begins."""

    def __init__(self, counts: Counter, log: list | None = None) -> None:
        self.counts = counts
        self.log = log  # (time, "METHOD /path?query") of each request, when kept
        self.buffer = b""
        self.state = "head"  # head | body | chunk-size | chunk-data | trailer
        self.remaining = 0
        self.current: Request | None = None

    def feed(self, data: bytes) -> list[tuple[int, Request]]:
        starts: list[tuple[int, Request]] = []
        position = 0
        while position < len(data):
            if self.state in ("body", "chunk-data"):
                step = min(self.remaining, len(data) - position)
                self.remaining -= step
                position += step
                if self.remaining == 0:
                    self.state = "head" if self.state == "body" else "chunk-size"
                continue
            if self.state == "head" and not self.buffer:
                self.current = Request()
                starts.append((position, self.current))
            taken = len(self.buffer)
            self.buffer += data[position:]
            consumed = self._parse_buffer()
            if consumed is None:  # the rest of the data waits in the buffer for its line's end
                break
            position += consumed - taken  # the bytes after the line are parsed from `data`
        return starts

    def _parse_buffer(self) -> int | None:
        """Parse a head or chunk line at the buffer's start and empty the buffer; returns the
        line's length (with its CRLF), or None if it is not complete yet."""
        if self.state == "head":
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = self.buffer[:end].decode("latin-1")
            self.buffer = b""
            lines = head.split("\r\n")
            method = lines[0].split(" ", 1)[0]
            self.counts[method] += 1
            if self.log is not None:
                self.log.append((time.time(), lines[0].rsplit(" ", 1)[0]))
            if self.current is not None:
                self.current.method = method
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.state = "chunk-size"
            elif int(headers.get("content-length", "0") or 0) > 0:
                self.state, self.remaining = "body", int(headers["content-length"])
            return end + 4
        end = self.buffer.find(b"\r\n")
        if end < 0:
            return None
        line = self.buffer[:end]
        self.buffer = b""
        if self.state == "chunk-size":
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                self.state = "trailer"
            else:
                self.state, self.remaining = "chunk-data", size + 2  # the data and its CRLF
        elif self.state == "trailer" and not line:  # the blank line ending the trailers
            self.state = "head"
        return end + 2


class ResponseFramer:
    """Makes the test server's one-response-per-connection answers (Werkzeug closes every
    connection) framed for a kept-alive client connection, as a real S3 endpoint keeps them:
    drops `Connection: close` and, for a body delimited only by the end of the connection,
    re-frames it in chunked encoding. Interim 1xx answers pass through."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.buffer = b""
        self.in_body = False
        self.chunked = False

    def feed(self, data: bytes) -> bytes:
        if self.in_body:
            return self._body(data)
        self.buffer += data
        out = b""
        while not self.in_body:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return out
            lines = self.buffer[:end].split(b"\r\n")
            self.buffer = self.buffer[end + 4:]
            status = int(lines[0].split()[1])
            headers = [line for line in lines[1:] if not line.lower().startswith(b"connection:")]
            if status >= 200:
                self.in_body = True
                names = {line.split(b":", 1)[0].strip().lower() for line in headers}
                bodyless = self.request.method == "HEAD" or status in (204, 304)
                if not bodyless and not names & {b"content-length", b"transfer-encoding"}:
                    headers.append(b"Transfer-Encoding: chunked")
                    self.chunked = True
            out += b"\r\n".join([lines[0], *headers]) + b"\r\n\r\n"
        rest, self.buffer = self.buffer, b""
        return out + self._body(rest)

    def _body(self, data: bytes) -> bytes:
        if self.chunked and data:
            return b"%x\r\n" % len(data) + data + b"\r\n"
        return data

    def close(self) -> bytes:
        return b"0\r\n\r\n" if self.chunked else b""


class WanProxy:
    def __init__(self, upstream: tuple[str, int], *, listen: tuple[str, int] = ("127.0.0.1", 0),
                 rtt_ms: float = 50.0, down_mbit: float = 100.0, up_mbit: float = 20.0,
                 window_kib: int = 4096) -> None:
        self.upstream = upstream
        self.listen = listen
        self.rtt_s = rtt_ms / 1000
        self.up = Link(up_mbit, self.rtt_s / 2)
        self.down = Link(down_mbit, self.rtt_s / 2)
        self.window = max(1, window_kib * 1024 // CHUNK)  # queue items of at most CHUNK bytes
        self.requests: Counter = Counter()
        self.log: list[tuple[float, str]] = []  # every request line, for bench/run.py's --wan-log
        self.bytes = {"up": 0, "down": 0}
        self.connections = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.listen[0]}:{self.port}"

    def stats(self) -> dict:
        return {"connections": self.connections, "requests": dict(self.requests),
                "requests_total": sum(self.requests.values()), "bytes_up": self.bytes["up"],
                "bytes_down": self.bytes["down"], "time": time.time(),
                "up_mbit": self.up.rate * 8 / 1e6, "down_mbit": self.down.rate * 8 / 1e6,
                "rtt_ms": self.rtt_s * 1000}

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._connection, self.listen[0], self.listen[1])
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()

    async def _connection(self, client_reader, client_writer) -> None:
        """One client connection, kept alive; each of its requests goes to the server on a
        connection of its own (the test server closes after each answer; on loopback, free)."""
        self.connections += 1
        loop = asyncio.get_running_loop()
        parser = RequestParser(self.requests, self.log)
        up_queue: asyncio.Queue = asyncio.Queue()
        down_queue: asyncio.Queue = asyncio.Queue()
        # Taken before reading from a sender, given back when delivered: a full window leaves
        # the sender blocked, as a TCP window would.
        up_window = asyncio.Semaphore(self.window)
        down_window = asyncio.Semaphore(self.window)

        async def until(at: float) -> None:
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)

        async def read_client() -> None:
            extra = self.rtt_s  # the TCP handshake before the first byte
            while True:
                await up_window.acquire()
                data = await client_reader.read(CHUNK)
                if not data:
                    break
                starts = parser.feed(data)
                at = self.up.schedule(len(data), loop.time()) + extra
                extra = 0.0
                cuts = ([(0, None)] if not starts or starts[0][0] > 0 else []) + starts
                for index, (offset, request) in enumerate(cuts):
                    stop = cuts[index + 1][0] if index + 1 < len(cuts) else len(data)
                    up_queue.put_nowait((at, data[offset:stop], request, index + 1 == len(cuts)))
            up_queue.put_nowait(None)

        async def answer(server_reader, request: Request) -> None:
            framer = ResponseFramer(request)
            while True:
                await down_window.acquire()
                data = await server_reader.read(CHUNK)
                out = framer.feed(data) if data else framer.close()
                if out:
                    down_queue.put_nowait((self.down.schedule(len(out), loop.time()), out))
                else:
                    down_window.release()
                if not data:
                    return

        async def deliver_up() -> None:
            server_writer = None
            answering: asyncio.Future | None = None
            try:
                while True:
                    item = await up_queue.get()
                    if item is None:
                        break
                    at, data, request, last = item
                    await until(at)
                    if request is not None:  # a new request: a new connection to the server
                        if answering is not None:
                            await answering
                        if server_writer is not None:
                            server_writer.close()
                        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
                        answering = asyncio.ensure_future(answer(server_reader, request))
                    if server_writer is not None:
                        server_writer.write(data)
                        await server_writer.drain()
                    self.bytes["up"] += len(data)
                    if last:
                        up_window.release()
                if answering is not None:
                    await answering
            finally:
                if answering is not None:
                    answering.cancel()
                if server_writer is not None:
                    server_writer.close()
                down_queue.put_nowait(None)

        async def deliver_down() -> None:
            while True:
                item = await down_queue.get()
                if item is None:
                    return
                at, data = item
                await until(at)
                client_writer.write(data)
                await client_writer.drain()
                self.bytes["down"] += len(data)
                down_window.release()

        tasks = [asyncio.ensure_future(job()) for job in (read_client, deliver_up, deliver_down)]
        try:
            done, pending = await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            client_writer.close()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    # --- in a thread, for bench/run.py ---------------------------------------------------------
    def start(self) -> "WanProxy":
        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.serve())
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="wan-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("wan proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def _write_stats(proxy: WanProxy, path: str) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(proxy.stats(), handle)
    os.replace(temporary, path)


async def _main(args) -> None:
    down, up, rtt = PROFILES[args.profile] if args.profile else (100.0, 20.0, 50.0)
    down = args.down_mbit if args.down_mbit is not None else down
    up = args.up_mbit if args.up_mbit is not None else up
    rtt = args.rtt_ms if args.rtt_ms is not None else rtt
    proxy = WanProxy(_address(args.upstream), listen=_address(args.listen), rtt_ms=rtt, down_mbit=down,
                     up_mbit=up, window_kib=args.window_kib)
    await proxy.serve()
    print(f"wan proxy {proxy.url} -> {args.upstream}: down {down} Mbit/s, up {up} Mbit/s, rtt {rtt} ms",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        if args.stats:
            _write_stats(proxy, args.stats)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    if args.stats:
        _write_stats(proxy, args.stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to accept on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="fibre: 100/20 Mbit/s, gigabit: 1000/1000; 50 ms")
    parser.add_argument("--rtt-ms", type=float, default=None, help="round trip, half on each direction (50)")
    parser.add_argument("--down-mbit", type=float, default=None, help="server -> client cap, 0 = none (100)")
    parser.add_argument("--up-mbit", type=float, default=None, help="client -> server cap, 0 = none (20)")
    parser.add_argument("--window-kib", type=int, default=4096, help="per connection and direction in flight")
    parser.add_argument("--stats", help="JSON counters rewritten every 0.2 s and at exit")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
