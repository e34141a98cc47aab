import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core.paths import MAX_PATH_BYTES, disk_segments, normalize_path
from rimio.errors import BadRequest

segment_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/")
raw_paths = st.lists(
    st.one_of(st.text(segment_chars, max_size=12), st.sampled_from([".", "..", "", "g.1", "part.0"])),
    max_size=8,
).map("/".join)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a/b", "a/b"), ("/a//b/", "a/b"), ("///x", "x"), ("a b/ü.txt", "a b/ü.txt")],
)
def test_normalizes(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "/", "//", "a/../b", "..", ".", "a/./b", "a\x00b", "a\nb", "a\x7fb", "x" * 1025,
     "é" * 513],
)
def test_rejects(raw: str) -> None:
    with pytest.raises(BadRequest):
        normalize_path(raw)


def test_length_limit_is_in_bytes() -> None:
    assert normalize_path("x" * MAX_PATH_BYTES)
    assert normalize_path("é" * (MAX_PATH_BYTES // 2))


@given(raw_paths)
def test_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = normalize_path(raw)
    except BadRequest:
        return
    assert normalize_path(once) == once


@given(raw_paths)
def test_accepted_paths_stay_inside_the_slot(raw: str) -> None:
    try:
        path = normalize_path(raw)
    except BadRequest:
        return
    segments = disk_segments(path)
    base = Path("/slot/blobs")
    for seg in segments:
        assert seg not in (".", "..", "")
        assert "/" not in seg and "\x00" not in seg
        assert not seg.startswith(("g.", "part.", "."))
        assert len(seg.encode()) <= 255
    resolved = Path(os.path.normpath(base.joinpath(*segments)))
    assert base in resolved.parents


@given(st.lists(raw_paths, min_size=2, max_size=2))
def test_disk_segments_are_injective(pair: list[str]) -> None:
    try:
        a, b = (normalize_path(p) for p in pair)
    except BadRequest:
        return
    if a != b:
        assert disk_segments(a) != disk_segments(b)


def test_layout_names_are_escaped() -> None:
    assert disk_segments("g.1/part.00000000.ab/.hidden/%41") == [
        "%67.1", "%70art.00000000.ab", "%2Ehidden", "%2541"]
    long = disk_segments("y" * 300)
    assert long[0].startswith("%H") and len(long[0]) == 66
