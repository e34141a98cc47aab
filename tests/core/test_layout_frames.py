"""The layout frame codec: round trips, bounds, and garbage at the trust boundary."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core.frames import FrameError, FrameErrorReason
from rimio.core.layout import Holding, Layout, Member, Role
from rimio.core.layout_frames import decode_layout, encode_layout

MAX = 1 << 20


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    total = draw(st.integers(1, 300))
    replicas = draw(st.integers(1, 5))
    w = draw(st.none() | st.integers(1, replicas))
    ids = draw(st.lists(st.text(min_size=1, max_size=12), unique=True, max_size=6))
    members = {n: Member(draw(st.text(min_size=1, max_size=20)),
                         draw(st.sampled_from(list(Role)))) for n in ids}
    holdings = {n: Holding(draw(st.integers(0, 2**40)),
                           frozenset(draw(st.lists(st.integers(0, total - 1)))))
                for n in ids if draw(st.booleans())}
    return Layout(total, replicas, w, members, holdings)


@given(layouts())
def test_round_trip(layout: Layout) -> None:
    data = encode_layout(layout, cluster="c")
    back = decode_layout(data, max_size=MAX, cluster="c")
    assert back == layout and back.digest == layout.digest and back.version == layout.version


def test_a_2048_slot_holding_is_a_256_byte_bitmap() -> None:
    layout = Layout.founding({f"n{i}": f"10.0.0.{i}:1" for i in range(10)}, total_slots=2048,
                             replicas=3, write_quorum=None)
    assert len(encode_layout(layout, cluster="c")) < 10 * (256 + 64)


@given(st.binary(max_size=400))
def test_garbage_raises_frame_error_only(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode_layout(data, max_size=MAX)


def _frame(**changes: object) -> bytes:
    body: dict[str, object] = {"t": "layout", "ts": 16, "r": 3, "w": None,
                               "m": [["a", "a:1", "active"]], "h": [["a", 1, b"\x01\x00"]],
                               "v": 1, "c": "c"}
    body.update(changes)
    out: bytes = msgpack.packb(body, use_bin_type=True)
    return out


@given(st.dictionaries(st.sampled_from(["t", "ts", "r", "w", "m", "h", "v", "c", "zz"]),
                       st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text()
                                    | st.binary(max_size=4),
                                    lambda inner: st.lists(inner, max_size=4), max_leaves=12)))
def test_mangled_frames_raise_frame_error_only(changes: dict[str, object]) -> None:
    with contextlib.suppress(FrameError):
        decode_layout(_frame(**changes), max_size=MAX)


def test_bounds_and_reasons() -> None:
    assert decode_layout(_frame(), max_size=MAX).held_by("a") == frozenset({0})
    cases = {
        "too large": (_frame(), 10, FrameErrorReason.TOO_LARGE),
        "version": (_frame(v=2), MAX, FrameErrorReason.VERSION),
        "type": (_frame(t="ping"), MAX, FrameErrorReason.UNKNOWN_TYPE),
        "slot beyond total": (_frame(h=[["a", 1, b"\x00\x80"]], ts=15), MAX,
                              FrameErrorReason.SHAPE),
        "short bitmap": (_frame(h=[["a", 1, b"\x01"]]), MAX, FrameErrorReason.SHAPE),
        "unknown role": (_frame(m=[["a", "a:1", "boss"]]), MAX, FrameErrorReason.SHAPE),
        "twice": (_frame(m=[["a", "a:1", "active"], ["a", "b:1", "active"]]), MAX,
                  FrameErrorReason.SHAPE),
        "holding of a stranger": (_frame(h=[["b", 1, b"\x01\x00"]]), MAX,
                                  FrameErrorReason.SHAPE),
        "w above r": (_frame(w=4), MAX, FrameErrorReason.SHAPE),
        "bool as int": (_frame(ts=True), MAX, FrameErrorReason.SHAPE),
        "trailing": (_frame() + b"\x00", MAX, FrameErrorReason.MSGPACK),
    }
    for name, (data, size, reason) in cases.items():
        with pytest.raises(FrameError) as info:
            decode_layout(data, max_size=size)
        assert info.value.reason is reason, name
    with pytest.raises(FrameError) as info:
        decode_layout(_frame(), max_size=MAX, cluster="other")
    assert info.value.reason is FrameErrorReason.WRONG_CLUSTER
    # a newer peer's extra field is skipped
    assert decode_layout(_frame(zz=[[1, 2], {"a": 1}]), max_size=MAX).members


def test_a_huge_member_list_is_refused_before_it_is_built() -> None:
    rows = [[f"n{i}", "a:1", "active"] for i in range(2000)]
    with pytest.raises(FrameError):
        decode_layout(_frame(m=rows, h=[]), max_size=MAX)


def test_holdings_met_before_come_back_as_the_same_objects() -> None:
    layout = Layout.founding({f"n{i}": f"10.0.0.{i}:1" for i in range(5)}, total_slots=2048,
                             replicas=3, write_quorum=None)
    data = encode_layout(layout, cluster="c")
    back = decode_layout(data, max_size=MAX, cluster="c")
    assert back == layout
    assert all(back.holdings[n] is h for n, h in layout.holdings.items())
    again = decode_layout(data, max_size=MAX, cluster="c")
    assert all(again.holdings[n] is h for n, h in back.holdings.items())


def test_a_bitmap_met_before_is_checked_against_each_frames_total() -> None:
    # slot 15 is fine at 16 slots; the same bitmap at 15 slots names a slot beyond
    ok = _frame(h=[["a", 1, b"\x00\x80"]], ts=16)
    assert decode_layout(ok, max_size=MAX).held_by("a") == frozenset({15})
    with pytest.raises(FrameError) as info:
        decode_layout(_frame(h=[["a", 1, b"\x00\x80"]], ts=15), max_size=MAX)
    assert info.value.reason is FrameErrorReason.SHAPE


@given(layouts(), layouts())
def test_round_trips_in_any_order_keep_their_holdings(a: Layout, b: Layout) -> None:
    # decoding one frame between the encode and the decode of another (the
    # codec remembers holdings across frames) changes nothing
    data_a, data_b = encode_layout(a, cluster="c"), encode_layout(b, cluster="c")
    assert decode_layout(data_b, max_size=MAX, cluster="c") == b
    assert decode_layout(data_a, max_size=MAX, cluster="c") == a
