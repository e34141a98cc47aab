"""The request parsers of `rimio.api.http`, as pure functions (no request, no node)."""

import pytest

from rimio.api.http import (
    blob_path_of,
    etag_list,
    parse_content_length,
    parse_precondition,
    requested_range,
)
from rimio.core.errors import BadRequest, RangeNotSatisfiable
from rimio.core.ranges import ByteRange
from rimio.core.writes import Precondition

ETAG = '"abc"'


@pytest.mark.parametrize(
    ("range_header", "if_range", "expect"),
    [
        (None, None, None),
        ("bytes=0-1", None, ByteRange(0, 1, 10)),
        ("bytes=0-1", ETAG, ByteRange(0, 1, 10)),  # the client's copy is current
        ("bytes=0-1", f" {ETAG} ", ByteRange(0, 1, 10)),
        ("bytes=0-1", '"old"', None),  # stale copy: the whole object
        ("bytes=0-1", "abc", None),  # unquoted is another tag
        (None, ETAG, None),  # If-Range alone changes nothing
        ("bytes=-3", None, ByteRange(7, 9, 10)),
        ("bytes=5-2", None, None),  # invalid: ignored
        ("items=0-1", None, None),
    ],
)
def test_requested_range(range_header: str | None, if_range: str | None,
                         expect: ByteRange | None) -> None:
    assert requested_range(range_header, if_range, ETAG, 10) == expect


def test_requested_range_unsatisfiable_unless_stale() -> None:
    with pytest.raises(RangeNotSatisfiable):
        requested_range("bytes=10-", None, ETAG, 10)
    with pytest.raises(RangeNotSatisfiable):
        requested_range("bytes=10-", ETAG, ETAG, 10)
    # a stale If-Range gets the whole object, never a 416
    assert requested_range("bytes=10-", '"old"', ETAG, 10) is None


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/api/v1/blobs/a/b", "a/b"),
        (b"/api/v1/blobs/caf%C3%A9/x%20y", "caf\u00e9/x y"),
        (b"/api/v1/blobs/a%2Fb", "a/b"),
        (b"/api/v1/blobs/a/../b", "a/../b"),  # normalising is the object layer's job
        (b"/api/v1/blobs/", ""),
        (b"/api/v1/blobs/x?y=1", "x"),
    ],
)
def test_blob_path_of(raw: bytes, path: str) -> None:
    assert blob_path_of(raw) == path


@pytest.mark.parametrize("raw", [b"/api/v1/blobs", b"/other/x", b"/api/v1/blobs/%FF"])
def test_blob_path_of_refuses(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        blob_path_of(raw)


def test_content_length() -> None:
    assert parse_content_length(None) is None
    assert parse_content_length("0") == 0
    assert parse_content_length("12345") == 12345
    for bad in ("", "-1", "1.5", " 1", "x", "1" * 20, "\u0661", "\u00b2"):
        with pytest.raises(BadRequest):
            parse_content_length(bad)


def test_etag_list() -> None:
    assert etag_list('"a", W/"b" ,c') == ("a", "b", "c")
    assert etag_list("*") == ("*",)
    assert etag_list(" , ") == ()


def test_precondition() -> None:
    assert parse_precondition(None, None) is None
    assert parse_precondition(None, "*") == Precondition(if_match=None, if_none_match_any=True)
    assert parse_precondition('"a","b"', None) == Precondition(if_match=("a", "b"),
                                                               if_none_match_any=False)
    with pytest.raises(BadRequest):
        parse_precondition(None, '"a"')
