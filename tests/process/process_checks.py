"""Checkers for process tests: a history of writes versus what a node serves.

A checker that never fails proves nothing: test_checkers.py feeds these
histories and disks with planted anomalies and shows they are caught.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import httpx


@dataclass
class Write:
    round: int
    path: str
    sha: str
    size: int
    outcome: str = "in-flight"  # "acked", "in-flight" (no answer), or "status <n>"
    generation: int | None = None


def verify_history(url: str, writes: list[Write]) -> list[str]:
    """Check what a node shows against the history of writes issued to it.

    - no (path, generation) was acknowledged twice;
    - a path with an acknowledged write is not 404, and its visible generation
      is at least the newest acknowledged one (lower: an acknowledged write
      was lost); if it is an acknowledged generation, the bytes are exactly
      that write's;
    - nothing is torn: the body hashes to the ETag, the length matches
      Content-Length, and the body is the body of some write to that path;
    - HEAD and the listing agree with GET.

    Returns the problems found (empty: all good).
    """
    problems: list[str] = []
    by_path: dict[str, list[Write]] = {}
    for w in writes:
        by_path.setdefault(w.path, []).append(w)
    seen: dict[tuple[str, int], Write] = {}
    for w in writes:
        if w.generation is not None:
            other = seen.setdefault((w.path, w.generation), w)
            if other is not w:
                problems.append(f"{w.path}: generation {w.generation} acknowledged twice "
                                f"(rounds {other.round} and {w.round})")
    visible: dict[str, tuple[int, str, int]] = {}
    with httpx.Client(timeout=15.0) as client:
        for path, ws in sorted(by_path.items()):
            acked = [w for w in ws if w.generation is not None]
            r = client.get(f"{url}/api/v1/blobs/{path}")
            if r.status_code == 404:
                if acked:
                    problems.append(f"{path}: 404 but {len(acked)} writes were acknowledged")
                continue
            if r.status_code != 200:
                problems.append(f"{path}: GET -> {r.status_code}: {r.text[:300]}")
                continue
            body = r.content
            sha = hashlib.sha256(body).hexdigest()
            gen = int(r.headers["X-Rimio-Generation"])
            visible[path] = (gen, sha, len(body))
            if r.headers.get("ETag") != f'"{sha}"':
                problems.append(f"{path}: torn: body sha {sha}, ETag {r.headers.get('ETag')}")
            if int(r.headers["Content-Length"]) != len(body):
                problems.append(f"{path}: Content-Length {r.headers['Content-Length']} "
                                f"!= {len(body)}")
            if sha not in {w.sha for w in ws}:
                problems.append(f"{path}: body ({len(body)} B, gen {gen}) is no write's body")
            if acked:
                newest = max(acked, key=lambda w: w.generation or 0)
                if gen < (newest.generation or 0):
                    problems.append(f"{path}: acknowledged generation {newest.generation} "
                                    f"lost; generation {gen} is visible")
            for w in acked:
                if w.generation == gen and w.sha != sha:
                    problems.append(f"{path}: generation {gen} was acknowledged with "
                                    f"{w.sha}, GET returns {sha}")
            h = client.head(f"{url}/api/v1/blobs/{path}")
            if (h.status_code, h.headers.get("ETag"), h.headers.get("X-Rimio-Generation")) != (
                    200, f'"{sha}"', str(gen)):
                problems.append(f"{path}: HEAD disagrees with GET: {h.status_code} "
                                f"{dict(h.headers)}")
        listing = client.get(f"{url}/api/v1/blobs", params={"limit": 10000})
        if listing.status_code != 200:
            problems.append(f"list -> {listing.status_code}: {listing.text[:300]}")
        else:
            listed = {i["path"]: (i["generation"], i["etag"], i["size_bytes"])
                      for i in listing.json()["items"]}
            if listed != visible:
                problems.append(f"listing {listed} != what GET shows {visible}")
    return problems
