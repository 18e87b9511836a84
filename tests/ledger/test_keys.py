"""Keys, key ids, verifier key strings, key files and Ed25519 verification."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.errors import ConfigError, VerificationError
from ledger.keys import (
    SigningKey,
    Verifier,
    check_key_name,
    decode_base64,
    encode_base64,
    key_id,
    parse_verifier_key,
    verifier_key_string,
    verify_ed25519,
)
from tests.conftest import SHARED_TESTDATA

WYCHEPROOF = SHARED_TESTDATA / "ed25519" / "wycheproof_ed25519_test.json"


def _wycheproof_cases() -> list[tuple[int, str, str, str, str]]:
    suite = json.loads(WYCHEPROOF.read_text())
    cases = [
        (t["tcId"], group["publicKey"]["pk"], t["msg"], t["sig"], t["result"])
        for group in suite["testGroups"]
        for t in group["tests"]
    ]
    assert len(cases) == suite["numberOfTests"]
    return cases


WYCHEPROOF_CASES = _wycheproof_cases()


@pytest.mark.parametrize(
    ("tc_id", "pk", "msg", "sig", "result"),
    WYCHEPROOF_CASES,
    ids=[f"tc{case[0]}" for case in WYCHEPROOF_CASES],
)
def test_verify_ed25519_agrees_with_wycheproof(
    tc_id: int, pk: str, msg: str, sig: str, result: str
) -> None:
    args = (bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig))
    if result == "valid":
        verify_ed25519(*args)
    else:
        assert result == "invalid"
        with pytest.raises(VerificationError) as info:
            verify_ed25519(*args)
        assert info.value.reason == "tampered"


@pytest.mark.parametrize(("pk_len", "sig_len"), [(0, 64), (31, 64), (33, 64), (32, 0)])
def test_verify_ed25519_wrong_lengths_raise_verification_error(
    pk_len: int, sig_len: int
) -> None:
    with pytest.raises(VerificationError):
        verify_ed25519(b"\x01" * pk_len, b"m", b"\x02" * sig_len)


def test_signatures_verify_under_an_independent_implementation() -> None:
    key = SigningKey.generate()
    sig = key.sign(b"hello")
    assert len(sig) == 64
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig, b"hello")
    verify_ed25519(key.public_key, b"hello", sig)
    with pytest.raises(VerificationError):
        verify_ed25519(key.public_key, b"hellO", sig)


def test_a_verified_signature_is_answered_again_without_verifying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, other = SigningKey.generate(), SigningKey.generate().public_key
    message = os.urandom(40)
    sig = key.sign(message)
    verify_ed25519(key.public_key, message, sig)

    def refuse(*args: object) -> None:
        raise AssertionError("verified again")

    monkeypatch.setattr(nacl.signing, "VerifyKey", refuse)
    verify_ed25519(key.public_key, message, sig)  # kept
    # Only that exact triple is kept: any other one is verified.
    for args in [
        (key.public_key, message + b"x", sig),
        (other, message, sig),
        (key.public_key, message, sig[:-1] + bytes([sig[-1] ^ 1])),
    ]:
        with pytest.raises(AssertionError, match="verified again"):
            verify_ed25519(*args)


def test_a_failed_verification_is_not_kept() -> None:
    key = SigningKey.generate()
    sig = key.sign(b"m")
    for _ in range(2):
        with pytest.raises(VerificationError):
            verify_ed25519(key.public_key, b"n", sig)


def test_signing_is_deterministic_from_the_seed() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_seed(key.seed)
    assert again.public_key == key.public_key
    assert again.sign(b"m") == key.sign(b"m")


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_from_seed_refuses_wrong_length(length: int) -> None:
    with pytest.raises(ValueError):
        SigningKey.from_seed(b"\x00" * length)


def test_repr_does_not_show_the_seed() -> None:
    key = SigningKey.generate()
    assert key.seed.hex() not in repr(key)
    assert key.public_key.hex() in repr(key)


def test_go_example_verifier_key_round_trips(testdata: Path) -> None:
    example = testdata / "notes" / "go-sumdb-note-example.json"
    text = json.loads(example.read_text())["verifier_key"]
    verifier = parse_verifier_key(text)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_id == bytes.fromhex("c74f20a3")
    assert verifier_key_string(verifier.name, verifier.public_key) == text
    assert verifier.key_string() == text


def test_key_id_is_sha256_of_name_newline_alg_key() -> None:
    pk = SigningKey.generate().public_key
    want = hashlib.sha256(b"agency-a\n\x01" + pk).digest()[:4]
    assert key_id("agency-a", pk) == want
    assert Verifier.from_public_key("agency-a", pk).key_id == want


def test_verifier_refuses_a_key_id_that_does_not_match() -> None:
    pk = SigningKey.generate().public_key
    with pytest.raises(ValueError):
        Verifier("agency-a", b"\x00\x00\x00\x00", pk)


def _good_key_string() -> str:
    return verifier_key_string(
        "agency-a", SigningKey.from_seed(b"\x07" * 32).public_key
    )


def _mutations() -> list[tuple[str, str]]:
    good = _good_key_string()
    name, kid, b64 = good.split("+", 2)
    raw = decode_base64(b64)
    pk = raw[1:]
    other_alg = encode_base64(b"\x02" + pk)
    return [
        ("empty", ""),
        ("no parts", name),
        ("two parts", f"{name}+{kid}"),
        ("empty name", f"+{kid}+{b64}"),
        ("space in name", f"agency a+{kid}+{b64}"),
        ("nbsp in name", f"agency\u00a0a+{kid}+{b64}"),
        ("uppercase id", f"{name}+{kid.upper()}+{b64}"),
        ("short id", f"{name}+{kid[:6]}+{b64}"),
        ("wrong id", f"{name}+00000000+{b64}"),
        ("wrong alg byte", f"{name}+{kid}+{other_alg}"),
        ("short key", f"{name}+{kid}+{encode_base64(raw[:-1])}"),
        ("long key", f"{name}+{kid}+{encode_base64(raw + b'x')}"),
        ("truncated base64", f"{name}+{kid}+{b64[:-1]}"),
        ("trailing newline", good + "\n"),
        ("leading space", " " + good),
        ("other name, same id", f"agency-b+{kid}+{b64}"),
    ]


@pytest.mark.parametrize(
    "text", [m[1] for m in _mutations()], ids=[m[0] for m in _mutations()]
)
def test_parse_verifier_key_refuses_defects_as_malformed(text: str) -> None:
    with pytest.raises(VerificationError) as info:
        parse_verifier_key(text)
    assert info.value.reason == "malformed"


# Every character Go's unicode.IsSpace accepts, which the spec's "Unicode
# spaces" means in the reference implementation.
GO_SPACES = [
    "\t", "\n", "\v", "\f", "\r", " ", "\x85", "\xa0", "\u1680",
    *map(chr, range(0x2000, 0x200B)), "\u2028", "\u2029", "\u202f", "\u205f",
    "\u3000",
]  # fmt: skip


@pytest.mark.parametrize("space", GO_SPACES, ids=[hex(ord(c)) for c in GO_SPACES])
def test_key_names_with_any_unicode_space_are_refused(space: str) -> None:
    with pytest.raises(ValueError):
        check_key_name(f"a{space}b")


@pytest.mark.parametrize("name", ["", "a+b", "a\x00b", "a\udc80"])
def test_key_names_empty_plus_control_or_surrogate_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_key_name(name)


def test_key_names_may_be_unicode_urls() -> None:
    check_key_name("bộ-tư-pháp.gov.vn/log")


def test_decode_base64_refuses_a_second_spelling() -> None:
    assert decode_base64("AA==") == b"\x00"
    for other in ("AB==", "AA", "AA=", "A A==", "AA==\n", "-_=="):
        with pytest.raises(ValueError):
            decode_base64(other)


def test_saved_key_file_is_mode_0600_one_hex_line(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "node.key"
    key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == key.seed.hex() + "\n"
    assert SigningKey.load(path).public_key == key.public_key


def test_save_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SigningKey.generate().save(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600


def test_save_never_overwrites_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first = SigningKey.generate()
    first.save(path)
    with pytest.raises(ConfigError):
        SigningKey.generate().save(path)
    assert SigningKey.load(path).public_key == first.public_key


def test_save_refuses_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "node.key").symlink_to(target)
    with pytest.raises(ConfigError):
        SigningKey.generate().save(tmp_path / "node.key")
    assert not target.exists()


def test_load_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        SigningKey.load(tmp_path / "absent.key")


@pytest.mark.parametrize(
    "content",
    [b"", b"00" * 31 + b"\n", b"00" * 33 + b"\n", b"AB" * 32 + b"\n",
     b"zz" * 32 + b"\n", b"00" * 32 + b"\n\n", b" " + b"00" * 32, b"\xff" * 64],
)  # fmt: skip
def test_load_malformed_file_is_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        SigningKey.load(path)


def test_load_accepts_a_seed_line_without_final_newline(tmp_path: Path) -> None:
    key = SigningKey.generate()
    (tmp_path / "k").write_text(key.seed.hex())
    assert SigningKey.load(tmp_path / "k").seed == key.seed
