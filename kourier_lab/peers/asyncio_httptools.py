"""The asyncio + httptools peer: what a Python user would write by hand.

A plain asyncio Protocol per connection feeding httptools' llhttp parser,
"Hello World!" on every path, pipelined requests answered in order, a 400 and
a close on a parse error.  N worker processes share the port with
SO_REUSEPORT.

    python -m kourier_lab.peers.asyncio_httptools --host 127.0.0.1 --port 8080 --workers 2
"""
import argparse
import asyncio
import os
import signal
import socket
import sys

import httptools

RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: asyncio-httptools\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 12\r\n\r\nHello World!")
RESPONSE_CLOSE = (b"HTTP/1.1 200 OK\r\nServer: asyncio-httptools\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: 12\r\nConnection: close\r\n\r\nHello World!")
RESPONSE_10_KEEPALIVE = (b"HTTP/1.1 200 OK\r\nServer: asyncio-httptools\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: 12\r\nConnection: keep-alive\r\n\r\nHello World!")
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class HelloProtocol(asyncio.Protocol):
    __slots__ = ("transport", "parser", "out")

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.out = []

    def on_message_complete(self):
        # llhttp knows keep-alive from version and Connection; an HTTP/1.0
        # client only keeps the connection when the answer says so.
        if not self.parser.should_keep_alive():
            self.out.append(RESPONSE_CLOSE)
        elif self.parser.get_http_version() == "1.0":
            self.out.append(RESPONSE_10_KEEPALIVE)
        else:
            self.out.append(RESPONSE)

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.out.append(BAD_REQUEST)
            self._flush(close=True)
            return
        except httptools.HttpParserError:
            self.out.append(BAD_REQUEST)
            self._flush(close=True)
            return
        close = bool(self.out) and self.out[-1] is RESPONSE_CLOSE
        self._flush(close)

    def _flush(self, close):
        if self.out:
            self.transport.write(b"".join(self.out))
            self.out.clear()
        if close:
            self.transport.close()


async def _serve(sock):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HelloProtocol, sock=sock, backlog=4096)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with server:
        await stop


def _listen(host, port):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    children = []
    for _ in range(args.workers - 1):
        pid = os.fork()
        if pid == 0:
            asyncio.run(_serve(_listen(args.host, args.port)))
            os._exit(0)
        children.append(pid)

    print(f"asyncio-httptools listening on {args.host}:{args.port} with {args.workers} workers", flush=True)
    try:
        asyncio.run(_serve(_listen(args.host, args.port)))
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
