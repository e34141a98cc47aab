"""A do-nothing quart-trio app on hypercorn: the HTTP stack's own ceiling for small requests.

`bench_single_node.py` runs it as a subprocess to show how many 4 KiB PUT/GET requests
per second the stack Rimio is built on (hypercorn + quart-trio on trio) serves on this
machine when the handler does no storage work at all: a PUT reads its body and
answers a small JSON document, a GET answers 4 KiB from memory. It binds 127.0.0.1
on a free port and prints the port on stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

BODY = b"x" * 4096


def create_app() -> QuartTrio:
    app = QuartTrio("bare")

    @app.route("/api/v1/blobs/<path:_path>", methods=["PUT", "GET"])
    async def blob(_path: str) -> Response:
        if request.method == "PUT":
            size = 0
            async for chunk in request.body:
                size += len(chunk)
            return Response(json.dumps({"size_bytes": size}), status=201,
                            content_type="application/json")
        return Response(BODY, status=200, content_type="application/octet-stream")

    return app


async def main() -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("bare.http")
    async with trio.open_nursery() as nursery:
        binds: Any = await nursery.start(partial(serve, create_app(), config))
        print(str(binds[0]).rsplit(":", 1)[1], flush=True)


if __name__ == "__main__":
    trio.run(main)
    sys.exit(0)
