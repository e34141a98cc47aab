"""The disk identity codec and the start-up decision over a node's disks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core.disk_identity import (
    IDENTITY_FORMAT,
    MAX_IDENTITY_BYTES,
    DiskAction,
    DiskIdentity,
    DiskSeen,
    DiskState,
    decode_identity,
    encode_identity,
    plan_disks,
)
from rimio.core.errors import ConfigError

names = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S"),
                              include_characters=" "), min_size=1, max_size=40)
identities = st.builds(
    DiskIdentity, cluster=names, node_id=names, disk_uuid=names,
    disk_index=st.integers(0, 2**31 - 1),
    created_at=st.floats(0, 1e12, allow_nan=False, allow_infinity=False))


def _doc(**changes: object) -> bytes:
    doc: dict[str, object] = {"format": 1, "cluster": "c", "node_id": "n1",
                              "disk_uuid": "u-1", "disk_index": 0, "created_at": 1.5}
    for key, value in changes.items():
        if value is ...:
            doc.pop(key)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@given(identities)
def test_identity_round_trips(identity: DiskIdentity) -> None:
    data = encode_identity(identity)
    assert len(data) <= MAX_IDENTITY_BYTES
    assert decode_identity(data) == identity


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_give_one_clear_line(data: bytes) -> None:
    try:
        decode_identity(data)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)


@given(identities, st.integers(0, 200), st.integers(0, 255))
def test_a_damaged_identity_is_refused_or_still_well_formed(
        identity: DiskIdentity, at: int, byte: int) -> None:
    data = bytearray(encode_identity(identity))
    data[at % len(data)] = byte
    try:
        decoded = decode_identity(bytes(data))
    except ConfigError:
        return
    assert decoded.disk_index >= 0 and decoded.cluster and decoded.node_id


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b"{" * 100_000, "more than"),
    (b'{"format": NaN}', "not JSON"),
    (_doc(format="1"), "'format' must be an integer"),
    (_doc(format=IDENTITY_FORMAT + 1), "newer Rimio"),
    (_doc(format=0), "not a known format"),
    (_doc(colour="blue"), "unknown key 'colour'"),
    (_doc(node_id=...), "missing key 'node_id'"),
    (_doc(node_id=""), "'node_id' must be a non-empty string"),
    (_doc(cluster=7), "'cluster' must be a non-empty string"),
    (_doc(disk_uuid="a\nb"), "'disk_uuid' must be printable"),
    (_doc(disk_index=-1), "'disk_index'"),
    (_doc(disk_index=True), "'disk_index'"),
    (_doc(created_at="now"), "'created_at'"),
    (_doc(created_at=-5), "'created_at'"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_identity_files_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        decode_identity(data)


# -- the start-up decision ------------------------------------------------------


def _owned(path: str, node: str = "n1", cluster: str = "c", uuid: str | None = None) -> DiskSeen:
    identity = DiskIdentity(cluster, node, uuid or f"uuid-{path}", 0, 0.0)
    return DiskSeen(path, DiskState.OWNED, identity=identity)


BLANK, MISSING = DiskState.BLANK, DiskState.MISSING
KEEP, INIT, ADOPT = DiskAction.KEEP, DiskAction.INITIALISE, DiskAction.ADOPT


def _plan(*seen: DiskSeen, replacing: tuple[str, ...] = ()) -> list[DiskAction]:
    return plan_disks(seen, cluster="c", node_id="n1", replacing=replacing)


def test_a_first_start_initialises_every_blank_or_missing_disk() -> None:
    assert _plan(DiskSeen("/a", BLANK), DiskSeen("/b", MISSING)) == [INIT, INIT]


def test_the_node_s_own_disks_are_kept() -> None:
    assert _plan(_owned("/a"), _owned("/b")) == [KEEP, KEEP]


def test_a_disk_of_an_older_rimio_is_adopted() -> None:
    assert _plan(DiskSeen("/a", DiskState.LEGACY, legacy_owner="n1"),
                 DiskSeen("/b", DiskState.LEGACY)) == [ADOPT, ADOPT]


@pytest.mark.parametrize("holder", [_owned("/a"), DiskSeen("/a", DiskState.LEGACY)],
                         ids=["owned", "legacy"])
def test_a_missing_disk_beside_the_node_s_data_is_refused(holder: DiskSeen) -> None:
    with pytest.raises(ConfigError, match=r"^disk /b of node n1 is missing: .* /a holds"):
        _plan(holder, DiskSeen("/b", MISSING))


def test_an_empty_disk_beside_the_node_s_data_looks_unmounted() -> None:
    with pytest.raises(ConfigError, match=r"^disk /a of node n1 looks unmounted: .*/b holds"
                                          r".*rimio admin init-disk"):
        _plan(DiskSeen("/a", BLANK), _owned("/b"))


def test_a_disk_named_as_replaced_is_initialised() -> None:
    assert _plan(_owned("/a"), DiskSeen("/b", BLANK), DiskSeen("/c", MISSING),
                 replacing=("/b", "/c")) == [KEEP, INIT, INIT]


def test_only_a_blank_disk_can_be_named_as_replaced() -> None:
    with pytest.raises(ConfigError, match="not blank"):
        _plan(_owned("/a"), replacing=("/a",))
    with pytest.raises(ConfigError, match="not a disk of node n1"):
        _plan(_owned("/a"), replacing=("/z",))


@pytest.mark.parametrize(("seen", "message"), [
    (_owned("/a", node="n2"), r"^disk /a belongs to node 'n2', not to 'n1'$"),
    (_owned("/a", cluster="other"), r"^disk /a belongs to cluster 'other' .*not to 'c'$"),
    (DiskSeen("/a", DiskState.LEGACY, legacy_owner="n2"), r"belongs to node 'n2'"),
])
def test_a_disk_of_another_node_or_cluster_is_refused(seen: DiskSeen, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _plan(_owned("/b"), seen)
    with pytest.raises(ConfigError, match=message):  # also where it would be initialised
        _plan(DiskSeen("/b", BLANK), seen, replacing=("/b",))


def test_one_disk_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="/a and /b of node n1 are the same disk"):
        _plan(_owned("/a", uuid="u"), _owned("/b", uuid="u"))


@given(st.lists(st.sampled_from([BLANK, MISSING, DiskState.LEGACY, DiskState.OWNED]),
                min_size=1, max_size=5))
def test_a_blank_disk_is_initialised_only_when_the_node_has_nothing(
        states: list[DiskState]) -> None:
    seen = [_owned(f"/{i}") if s is DiskState.OWNED else DiskSeen(f"/{i}", s)
            for i, s in enumerate(states)]
    has_data = any(s in (DiskState.OWNED, DiskState.LEGACY) for s in states)
    has_blank = any(s in (BLANK, MISSING) for s in states)
    if has_data and has_blank:
        with pytest.raises(ConfigError):
            _plan(*seen)
        return
    actions = _plan(*seen)
    expected = {BLANK: INIT, MISSING: INIT, DiskState.LEGACY: ADOPT, DiskState.OWNED: KEEP}
    assert actions == [expected[s] for s in states]
