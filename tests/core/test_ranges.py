import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core.ranges import parse_range
from rimio.errors import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=2-4", 10, (2, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("BYTES = 1-2", 10, (1, 2)),
    ],
)
def test_valid_ranges(header: str, size: int, expected: tuple[int, int]) -> None:
    r = parse_range(header, size)
    assert r is not None and (r.start, r.end) == expected
    assert r.content_range() == f"bytes {expected[0]}-{expected[1]}/{size}"


@pytest.mark.parametrize(
    "header",
    [None, "", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=4-2", "items=0-1",
     "bytes=0-1,3-4", "bytes=1-2-3", "bytes=" + "9" * 40 + "-", "bytes=１-２"],
)
def test_invalid_or_unsupported_ranges_are_ignored(header: str | None) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10),
                                              ("bytes=-0", 10), ("bytes=0-", 0),
                                              ("bytes=-5", 0)])
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.size == size


@given(st.text(max_size=30), st.integers(0, 1000))
def test_parse_never_crashes_and_stays_in_bounds(header: str, size: int) -> None:
    try:
        r = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if r is not None:
        assert 0 <= r.start <= r.end < size
