import pytest
from hypothesis import given
from hypothesis import strategies as st

from rimio.core.auth import AuthError, ReplayGuard, sign, verify
from rimio.core.keyring import KeyRing, KeyRingError, SealError

K1, K2 = "11" * 32, "22" * 32


def test_seal_open_round_trip_and_associated_data() -> None:
    ring = KeyRing.parse(K1)
    sealed = ring.seal(b"frame", b"edge")
    assert ring.open(sealed, b"edge") == b"frame"
    with pytest.raises(SealError):
        ring.open(sealed, b"other-cluster")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        ring.open(tampered, b"edge")


def test_nonces_are_random() -> None:
    ring = KeyRing.parse(K1)
    assert ring.seal(b"x", b"") != ring.seal(b"x", b"")


def test_rotation_new_primary_still_opens_old_frames() -> None:
    old = KeyRing.parse(K1)
    both_old_first = KeyRing.parse(f"{K1}\n{K2}")
    both_new_first = KeyRing.parse(f"# rotated\n{K2}\n{K1}\n")
    new_only = KeyRing.parse(K2)
    frame = old.seal(b"hello", b"c")
    assert both_new_first.open(frame, b"c") == b"hello"
    assert both_old_first.open(both_new_first.seal(b"n", b"c"), b"c") == b"n"
    with pytest.raises(SealError):
        new_only.open(frame, b"c")


@given(st.binary(max_size=80))
def test_open_of_random_bytes_only_raises_seal_error(data: bytes) -> None:
    with pytest.raises(SealError):
        KeyRing.parse(K1).open(data, b"c")


@pytest.mark.parametrize("text", ["", "# only a comment", "abc", "zz" * 32, "11" * 31])
def test_bad_key_files(text: str) -> None:
    with pytest.raises(KeyRingError):
        KeyRing.parse(text)


def test_sign_verify() -> None:
    ring = KeyRing.parse(K1)
    guard = ReplayGuard(window=30)
    h = sign(ring.primary_mac_key, "POST", "/internal/v1/gossip/packet?from=a", b"body", 100.0)
    v = verify(ring.mac_keys, "POST", "/internal/v1/gossip/packet?from=a", h, 105.0, guard)
    assert len(v.digest) == 64
    with pytest.raises(AuthError, match="replayed"):
        verify(ring.mac_keys, "POST", "/internal/v1/gossip/packet?from=a", h, 106.0, guard)


@pytest.mark.parametrize(
    ("method", "target", "now", "keys", "needle"),
    [
        ("GET", "/x", 100.0, [K1], "bad signature"),
        ("POST", "/y", 100.0, [K1], "bad signature"),
        ("POST", "/x", 200.0, [K1], "clock skew"),
        ("POST", "/x", 100.0, [K2], "bad signature"),
    ],
)
def test_verify_refuses(method: str, target: str, now: float, keys: list[str],
                        needle: str) -> None:
    h = sign(KeyRing.parse(K1).primary_mac_key, "POST", "/x", b"", 100.0)
    mac_keys = KeyRing.parse("\n".join(keys)).mac_keys
    with pytest.raises(AuthError, match=needle):
        verify(mac_keys, method, target, h, now, ReplayGuard())


def test_verify_missing_headers() -> None:
    with pytest.raises(AuthError, match="missing"):
        verify([b"k"], "GET", "/", {}, 0.0, ReplayGuard())
