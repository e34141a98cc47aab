"""A cluster with one replica per slot: any node serves any path, by
forwarding to the node that holds its slot; listings are cluster-wide."""

import hashlib
import os
from pathlib import Path

import httpx

from rimio.core.frames import Status
from rimio.testing import LocalCluster


async def test_any_node_serves_any_path(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="http", replicas=1) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        urls = [n.url for n in c.nodes.values()]
        bodies = {f"dir/{i:02d}": os.urandom(100 + i * 3000) for i in range(24)}
        owners = set()
        async with httpx.AsyncClient(timeout=30) as client:
            for i, (path, body) in enumerate(bodies.items()):
                r = await client.put(f"{urls[i % 3]}/api/v1/blobs/{path}", content=body)
                assert r.status_code == 201, r.text
                assert r.json()["etag"] == hashlib.sha256(body).hexdigest()
                res = (await client.get(f"{urls[0]}/api/v1/slots/resolve",
                                        params={"path": path})).json()
                owners.add(res["replicas"][0])
            assert len(owners) > 1  # the paths really are spread over the nodes
            for i, (path, body) in enumerate(bodies.items()):
                r = await client.get(f"{urls[(i + 1) % 3]}/api/v1/blobs/{path}")
                assert r.status_code == 200 and r.content == body
                assert r.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
                r = await client.get(f"{urls[(i + 2) % 3]}/api/v1/blobs/{path}",
                                     headers={"Range": "bytes=1-10"})
                assert r.status_code == 206 and r.content == body[1:11]
                h = await client.head(f"{urls[(i + 2) % 3]}/api/v1/blobs/{path}")
                assert h.status_code == 200 and h.headers["content-length"] == str(len(body))
            # a cluster-wide listing from any node, paged
            for url in urls:
                seen, cursor = [], None
                while True:
                    params = {"prefix": "dir/", "limit": "5"} | ({"cursor": cursor} if cursor
                                                                  else {})
                    page = (await client.get(f"{url}/api/v1/blobs", params=params)).json()
                    seen += [it["path"] for it in page["items"]]
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                assert seen == sorted(bodies)
            r = await client.delete(f"{urls[1]}/api/v1/blobs/dir/00")
            assert r.status_code == 200
            assert (await client.get(f"{urls[2]}/api/v1/blobs/dir/00")).status_code == 410
            r = await client.put(f"{urls[2]}/api/v1/blobs/dir/01", content=b"x",
                                 headers={"If-None-Match": "*"})
            assert r.status_code == 412


async def test_down_owner_answers_503(tmp_path: Path) -> None:
    async with LocalCluster(tmp_path, 3, transport="memory", replicas=1) as c:
        await c.wait_for(lambda: c.agree({i: Status.ALIVE for i in c.nodes}), within=10)
        async with httpx.AsyncClient(timeout=30) as client:
            url1 = c.nodes["node-1"].url
            path = ""
            for i in range(100):
                res = (await client.get(f"{url1}/api/v1/slots/resolve",
                                        params={"path": f"k{i}"})).json()
                if res["replicas"] == ["node-3"]:
                    path = f"k{i}"
                    break
            assert (await client.put(f"{url1}/api/v1/blobs/{path}",
                                     content=b"v")).status_code == 201
            c.crash("node-3")
            await c.wait_down("node-3")
            await c.wait_for(lambda: c.agree({"node-3": Status.DEAD}), within=15)
            r = await client.get(f"{url1}/api/v1/blobs/{path}")
            assert r.status_code == 503 and r.json()["error"]["code"] == "quorum_lost"
            r = await client.get(f"{url1}/api/v1/blobs")
            assert r.status_code == 503
