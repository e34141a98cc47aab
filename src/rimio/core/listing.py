"""Merging listings from several sources (nodes, replicas) into one page.

Each source returns its current heads in path order, after a cursor, at most
`fetch` of them (tombstones included, so a newer delete on one replica hides
an older write on another). The merged page holds each path once — its
winning head under the head order — and stops where a truncated source might
still hold unseen paths, so paging never skips anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rimio.core.head import Head, order_key


@dataclass(frozen=True, slots=True)
class Page:
    heads: list[Head]  # winners, sorted by path, tombstones removed unless asked for
    next_after: str | None  # continue after this path; None when every source is done


def merge_listings(sources: Sequence[Sequence[Head]], fetch: int, limit: int,
                   include_deleted: bool) -> Page:
    """`sources` each returned at most `fetch` heads; a source with exactly
    `fetch` is truncated and bounds how far the merge may go."""
    boundary: str | None = None
    for heads in sources:
        if len(heads) >= fetch and heads:
            last = heads[-1].path
            boundary = last if boundary is None or last < boundary else boundary
    best: dict[str, Head] = {}
    for heads in sources:
        for h in heads:
            if boundary is not None and h.path > boundary:
                break
            cur = best.get(h.path)
            if cur is None or order_key(h) > order_key(cur):
                best[h.path] = h
    paths = sorted(best)
    out: list[Head] = []
    last_seen: str | None = None
    for p in paths:
        if len(out) == limit:
            break
        last_seen = p
        h = best[p]
        if include_deleted or not h.deleted:
            out.append(h)
    consumed_all = not paths or last_seen == paths[-1]
    if consumed_all and boundary is None:
        return Page(out, None)
    return Page(out, last_seen)
