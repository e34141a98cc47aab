"""Tests for rimio.core.frames: round-trips, bounds, and hostile input."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rimio.core import frames as f

CLUSTER = "edge-demo"
MAX = 1 << 16

ids = st.text(max_size=12)
addrs = st.text(max_size=20)
uints = st.integers(min_value=0, max_value=f.MAX_UINT)

updates: st.SearchStrategy[f.Update] = st.one_of(
    st.builds(f.Alive, ids, addrs, uints),
    st.builds(f.Suspect, ids, addrs, uints, ids),
    st.builds(f.Dead, ids, addrs, uints, ids),
    st.builds(f.Leave, ids, addrs, uints),
)
update_lists = st.lists(updates, max_size=5).map(tuple)
states = st.lists(
    st.builds(f.MemberState, ids, addrs, st.sampled_from(list(f.Status)), uints), max_size=5
).map(tuple)

frames_st: st.SearchStrategy[f.Frame] = st.one_of(
    updates,
    st.builds(f.Ping, uints, ids, ids, addrs, update_lists),
    st.builds(f.PingReq, uints, ids, addrs, ids, addrs, st.booleans(), update_lists),
    st.builds(f.Ack, uints, ids, update_lists),
    st.builds(f.Nack, uints, ids),
    st.builds(f.Gossip, ids, update_lists),
    st.builds(f.PushPullRequest, uints, ids, addrs, st.booleans(), states),
    st.builds(f.PushPullResponse, uints, ids, states),
    st.builds(f.User, ids, st.text(max_size=10), st.binary(max_size=64)),
)


@given(frames_st)
def test_round_trip(frame: f.Frame) -> None:
    assert f.decode(f.encode(frame, cluster=CLUSTER), max_size=MAX, cluster=CLUSTER) == frame


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_frame_error(data: bytes) -> None:
    with contextlib.suppress(f.FrameError):
        f.decode(data, max_size=MAX)


msgpack_objects = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=12,
)

# Maps that look almost like frames, so the field validators get exercised.
near_frames = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 2, True, "1"]), "t": st.sampled_from(sorted(f.FRAME_TYPES)),
     "c": st.sampled_from([CLUSTER, "other", 3])},
    optional={k: msgpack_objects for k in ["s", "tn", "ta", "sn", "sa", "k", "u", "j", "m",
                                           "n", "a", "i", "f", "kd", "p"]},
)


@settings(max_examples=300)
@given(st.one_of(msgpack_objects, near_frames))
def test_random_msgpack_only_raise_frame_error(obj: Any) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    with contextlib.suppress(f.FrameError):
        f.decode(data, max_size=MAX, cluster=CLUSTER)


@given(frames_st, st.data())
def test_truncated_or_mutated_frames_only_raise_frame_error(frame: f.Frame, data: st.DataObject
                                                           ) -> None:
    raw = bytearray(f.encode(frame, cluster=CLUSTER))
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(0, cut - 1)), st.integers(0, 255)),
                               max_size=3))
    mutated = raw[:cut]
    for i, b in flips:
        if i < len(mutated):
            mutated[i] = b
    with contextlib.suppress(f.FrameError):
        f.decode(bytes(mutated), max_size=MAX, cluster=CLUSTER)


def _raw(**fields: Any) -> bytes:
    body: dict[str, Any] = {"v": 1, "c": CLUSTER, **fields}
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xc1", f.FrameErrorReason.MSGPACK),  # reserved byte
        (b"\x92\x01", f.FrameErrorReason.MSGPACK),  # truncated array
        (msgpack.packb({"v": 1}) + b"\x00", f.FrameErrorReason.MSGPACK),  # trailing bytes
        (msgpack.packb([1, 2]), f.FrameErrorReason.SHAPE),
        (msgpack.packb({"v": 2, "t": "ping"}), f.FrameErrorReason.VERSION),
        (_raw(t="teleport"), f.FrameErrorReason.UNKNOWN_TYPE),
        (_raw(t="nack", s=1), f.FrameErrorReason.SHAPE),  # missing source
        (_raw(t="nack", s=True, sn="a"), f.FrameErrorReason.SHAPE),  # bool is not an int
        (_raw(t="nack", s=-1, sn="a"), f.FrameErrorReason.SHAPE),
        (_raw(t="nack", s=1, sn="x" * 129), f.FrameErrorReason.SHAPE),
        (_raw(t="gossip", sn="a", u=[{"t": "ping"}]), f.FrameErrorReason.SHAPE),
        (_raw(t="push-pull-resp", s=1, sn="a", m=[["n", "a", "zombie", 1]]),
         f.FrameErrorReason.SHAPE),
        (_raw(t="user", sn="a", kd="k", p="text not bytes"), f.FrameErrorReason.SHAPE),
        (msgpack.packb({"v": 1, "c": "other", "t": "nack", "s": 1, "sn": "a"}),
         f.FrameErrorReason.WRONG_CLUSTER),
    ],
)
def test_error_reasons(data: bytes, reason: f.FrameErrorReason) -> None:
    with pytest.raises(f.FrameError) as info:
        f.decode(data, max_size=MAX, cluster=CLUSTER)
    assert info.value.reason is reason


def test_oversize_refused_before_parsing() -> None:
    frame = f.User("a", "blob", b"x" * 1000)
    data = f.encode(frame, cluster=CLUSTER)
    with pytest.raises(f.FrameError) as info:
        f.decode(data, max_size=500)
    assert info.value.reason is f.FrameErrorReason.TOO_LARGE
    assert f.decode(data, max_size=len(data)) == frame


def test_too_many_updates_refused() -> None:
    u = {"t": "alive", "n": "a", "a": "h:1", "i": 1}
    with pytest.raises(f.FrameError) as info:
        f.decode(_raw(t="gossip", sn="a", u=[u] * (f.MAX_UPDATES + 1)), max_size=MAX)
    assert info.value.reason is f.FrameErrorReason.SHAPE


def test_cluster_not_checked_when_not_asked() -> None:
    frame = f.Nack(1, "a")
    assert f.decode(f.encode(frame, cluster="x"), max_size=MAX) == frame


@given(updates)
def test_encoded_update_size_matches_growth(update: f.Update) -> None:
    empty = len(f.encode(f.Gossip("s", ()), cluster=CLUSTER))
    one = len(f.encode(f.Gossip("s", (update,)), cluster=CLUSTER))
    assert one - empty == f.encoded_update_size(update)


# Bytes produced by the codec before its layouts became declarative tables:
# the wire format must not move (peers of different versions gossip together).
PINNED: list[tuple[f.Frame, str]] = [
    (f.Nack(7, "n1"), "85a174a46e61636ba17307a2736ea26e31a17601a163a465646765"),
    (f.Ping(1, "n2", "n1", "10.0.0.1:7946", (f.Suspect("n3", "h:1", 2, "n1"),)),
     "88a174a470696e67a17301a2746ea26e32a2736ea26e31a27361ad31302e302e302e313a37393436a175"
     "9185a174a773757370656374a16ea26e33a161a3683a31a16902a166a26e31a17601a163a465646765"),
    (f.PushPullRequest(3, "n1", "h:1", True, (f.MemberState("n2", "h:2", f.Status.DEAD, 5),)),
     "88a174ad707573682d70756c6c2d726571a17303a2736ea26e31a27361a3683a31a16ac3a16d9194a26e32"
     "a3683a32a46465616405a17601a163a465646765"),
    (f.User("n1", "slots", b"\x00\x01"),
     "86a174a475736572a2736ea26e31a26b64a5736c6f7473a170c4020001a17601a163a465646765"),
]


@pytest.mark.parametrize(("frame", "hex_bytes"), PINNED, ids=[type(p[0]).__name__ for p in PINNED])
def test_wire_format_is_pinned(frame: f.Frame, hex_bytes: str) -> None:
    assert f.encode(frame, cluster="edge").hex() == hex_bytes
    assert f.decode(bytes.fromhex(hex_bytes), max_size=MAX, cluster="edge") == frame


def _valid_body(frame: f.Frame) -> dict[str, Any]:
    body: dict[str, Any] = msgpack.unpackb(f.encode(frame, cluster=CLUSTER), raw=False)
    return body


wrong_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(),
                         st.text(max_size=3), st.binary(max_size=3), st.just([]), st.just({}))


@given(frames_st, st.data())
def test_any_field_of_the_wrong_type_is_a_shape_error(frame: f.Frame, data: st.DataObject
                                                      ) -> None:
    body = _valid_body(frame)
    key = data.draw(st.sampled_from(sorted(set(body) - {"v", "t", "c"})))
    body[key] = data.draw(wrong_values)
    try:
        decoded = f.decode(msgpack.packb(body, use_bin_type=True), max_size=MAX, cluster=CLUSTER)
    except f.FrameError as exc:
        assert exc.reason is f.FrameErrorReason.SHAPE
    else:  # the drawn value happened to be valid for that field
        assert f.encode(decoded, cluster=CLUSTER) == msgpack.packb(body, use_bin_type=True)


def test_a_large_packet_frame_is_refused_by_its_type_before_its_fields() -> None:
    big = msgpack.packb({"t": "ping", "u": [b"x" * 1000] * 1000, "v": 1, "c": CLUSTER},
                        use_bin_type=True)
    assert len(big) > 1_000_000
    with pytest.raises(f.FrameError) as info:
        f.decode(big, max_size=f.DEFAULT_MAX_SIZE + 100_000)
    assert info.value.reason is f.FrameErrorReason.TOO_LARGE
    assert "ping frames are limited" in str(info.value)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        # 1 MiB of state rows far wider than a row: refused at the first row
        ({"t": "push-pull-req", "m": [[0] * 4000] * 250}, "member state must have at most"),
        # rows of the right width holding containers: refused at the first item
        ({"t": "push-pull-req", "m": [[[0] * 4000] * 4] * 60}, "member state item must not"),
        # updates before the type (so no packet cap yet) holding containers
        ({"u": [{"n": [0] * 4000}] * 60, "t": "gossip"}, "update field must not be"),
        ({"t": "user", "c": [[0] * 4000] * 250}, "field 'c' must not be"),
    ],
)
def test_a_one_mib_adversarial_frame_is_refused_by_the_shape_limits(body: dict[str, Any],
                                                                    needle: str) -> None:
    data = msgpack.packb(body, use_bin_type=True)
    assert len(data) > 200_000
    with pytest.raises(f.FrameError) as info:
        f.decode(data, max_size=f.DEFAULT_MAX_SIZE)
    assert info.value.reason is f.FrameErrorReason.SHAPE
    assert needle in str(info.value)


def test_unknown_keys_are_skipped_not_built() -> None:
    frame = f.User("a", "k", b"")
    raw = msgpack.unpackb(f.encode(frame, cluster=CLUSTER))
    raw["zz"] = [[0] * 4000] * 200  # a newer peer's field
    assert f.decode(msgpack.packb(raw), max_size=f.DEFAULT_MAX_SIZE) == frame
