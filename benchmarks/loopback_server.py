"""A trivial HTTP/1.1 server that measures the loopback ceiling of the benchmark's client.

`bench_single_node.py` runs it as a subprocess: it binds 127.0.0.1 on a free port,
prints the port on stdout, and then, on each kept-alive connection, answers every
``GET`` with ``--size`` bytes held in memory and every ``PUT`` by reading and
discarding its ``Content-Length`` body. No disk, no framework, no parsing beyond
the request head: what the httpx client achieves against it is the most it can
achieve against any server on this machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

RECV = 1024 * 1024
MAX_HEAD = 64 * 1024


def serve_connection(conn: socket.socket, body: memoryview) -> None:
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(RECV)
            if not data or len(buf) > MAX_HEAD:
                return
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        if lines[0].startswith(b"GET "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            conn.sendall(body)
            continue
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        got = min(len(buf), length)
        buf = buf[got:]
        while got < length:
            data = conn.recv(min(RECV, length - got))
            if not data:
                return
            got += len(data)
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, required=True, help="bytes answered to a GET")
    args = parser.parse_args()
    body = memoryview(os.urandom(args.size))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        print(listener.getsockname()[1], flush=True)
        while True:  # ends when the benchmark terminates this process
            conn, _ = listener.accept()
            with conn:
                serve_connection(conn, body)


if __name__ == "__main__":
    sys.exit(main())
