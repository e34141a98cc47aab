"""The listing merge: every path once, its winner, in order, and paging by
`next_after` visits exactly the live paths of the union of the sources."""

from hypothesis import given
from hypothesis import strategies as st

from rimio.core.head import Head, winner
from rimio.core.listing import merge_listings


def _h(path: str, gen: int, deleted: bool) -> Head:
    return Head(kind="tombstone" if deleted else "meta", path=path, slot_id=0, generation=gen,
                write_id="", etag="" if deleted else f"e{gen}")


source = st.dictionaries(st.sampled_from([f"p{i:02d}" for i in range(30)]),
                         st.tuples(st.integers(1, 3), st.booleans()), max_size=20)


def _page_of(src: dict[str, tuple[int, bool]], after: str | None, fetch: int) -> list[Head]:
    return [_h(p, g, d) for p, (g, d) in sorted(src.items()) if after is None or p > after][:fetch]


@given(st.lists(source, min_size=1, max_size=4), st.integers(1, 6), st.booleans())
def test_paging_visits_exactly_the_winners(srcs: list[dict[str, tuple[int, bool]]], limit: int,
                                           include_deleted: bool) -> None:
    everything: dict[str, list[Head]] = {}
    for src in srcs:
        for p, (g, d) in src.items():
            everything.setdefault(p, []).append(_h(p, g, d))
    expected = []
    for p in sorted(everything):
        w = winner(everything[p])
        assert w is not None
        if include_deleted or not w.deleted:
            expected.append(w)
    got: list[Head] = []
    after = None
    for _ in range(200):
        page = merge_listings([_page_of(s, after, limit + 1) for s in srcs], limit + 1, limit,
                              include_deleted)
        assert len(page.heads) <= limit
        got += page.heads
        if page.next_after is None:
            break
        assert after is None or page.next_after > after  # always progresses
        after = page.next_after
    assert got == expected


def test_newer_tombstone_on_one_source_hides_older_write_on_another() -> None:
    a = [_h("x", 1, False)]
    b = [_h("x", 2, True)]
    assert merge_listings([a, b], 10, 5, include_deleted=False).heads == []
    assert merge_listings([a, b], 10, 5, include_deleted=True).heads == [_h("x", 2, True)]
