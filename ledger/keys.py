"""Ed25519 keys, key ids and verifier key strings (C2SP signed-note).

A key is known to verifiers by its name and a 4-byte key id,
``SHA-256(name || 0x0A || 0x01 || public key)[:4]``, and written down as a
verifier key string ``<name>+<hex key id>+<base64(0x01 || public key)>``.
Signing and verification use libsodium through PyNaCl: it agrees with every
Wycheproof Ed25519 vector (``tests/ledger/test_keys.py`` pins that), so it
refuses non-canonical and small-order encodings that laxer Ed25519 code
accepts.

Parsers here accept exactly one spelling of each value (lowercase hex,
canonical padded base64) so that a key string, like every other encoding in
the ledger, has one form only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import nacl.exceptions
import nacl.signing

from ledger.errors import ConfigError, VerificationError
from ledger.kept import Kept

ED25519_ALG: Final = b"\x01"  # C2SP signed-note signature type for Ed25519
KEY_ID_SIZE: Final = 4
PUBLIC_KEY_SIZE: Final = 32
SEED_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
KEY_FILE_MODE: Final = 0o600

_CONTROL: Final = re.compile(r"[\x00-\x1f]")
_KEY_ID_HEX: Final = re.compile(r"[0-9a-f]{8}")
_SEED_LINE: Final = re.compile(r"([0-9a-f]{64})\n?")


def check_key_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a valid signed-note key name.

    The spec asks for a non-empty name without Unicode spaces or ``+``.
    Control characters are refused as well: a note may not contain them, so
    a key so named could never sign one.
    """
    if not name:
        raise ValueError("key name is empty")
    if "+" in name:
        raise ValueError(f"key name {name!r} contains '+'")
    # str.isspace covers every Unicode White_Space character (what Go's
    # unicode.IsSpace checks) plus U+001C..U+001F, refused anyway below.
    if any(ch.isspace() for ch in name):
        raise ValueError(f"key name {name!r} contains a space")
    if _CONTROL.search(name):
        raise ValueError(f"key name {name!r} contains a control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise ValueError(f"key name {name!r} is not valid UTF-8") from exc


def decode_base64(text: str) -> bytes:
    """Decode standard padded base64 (RFC 4648 §4), canonical form only.

    Raises ``ValueError`` on characters outside the alphabet, bad padding,
    and non-zero unused bits (a second spelling of the same bytes).
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError(f"not base64: {text[:40]!r}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"not canonical base64: {text[:40]!r}")
    return raw


def encode_base64(data: bytes) -> str:
    """Standard padded base64 of ``data``."""
    return base64.b64encode(data).decode("ascii")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 key: ``SHA-256(name||0x0A||0x01||pk)[:4]``.

    Preconditions: ``name`` passes ``check_key_name``; ``public_key`` is 32
    bytes (``ValueError`` otherwise).
    """
    check_key_name(name)
    _check_public_key(public_key)
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_ALG + public_key)
    return digest.digest()[:KEY_ID_SIZE]


def verifier_key_string(name: str, public_key: bytes) -> str:
    """``<name>+<hex key id>+<base64(0x01 || public key)>``.

    Preconditions as for ``key_id``.
    """
    kid = key_id(name, public_key).hex()
    return f"{name}+{kid}+{encode_base64(ED25519_ALG + public_key)}"


def _check_public_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class Verifier:
    """A named Ed25519 public key that note signatures are checked against.

    Invariant (checked on construction, ``ValueError`` otherwise): ``name``
    is a valid key name, ``public_key`` is 32 bytes and
    ``key_id == key_id(name, public_key)``.
    """

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        if key_id(self.name, self.public_key) != self.key_id:
            raise ValueError(f"key id {self.key_id.hex()} does not match the key")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        """The verifier for ``public_key`` under ``name`` (key id computed)."""
        return cls(name, key_id(name, public_key), public_key)

    def key_string(self) -> str:
        """This verifier written as a verifier key string."""
        return verifier_key_string(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise ``VerificationError("tampered")`` unless the signature holds."""
        verify_ed25519(self.public_key, message, signature)


def parse_verifier_key(text: str) -> Verifier:
    """Parse ``<name>+<hex key id>+<base64(0x01 || public key)>``.

    Raises ``VerificationError("malformed")`` on any defect: a bad name,
    key id not 8 lowercase hex digits, bad base64, an algorithm byte other
    than 0x01, a key of the wrong length, or a key id that does not match.
    """
    # The base64 alphabet contains '+': split at the first two only.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise VerificationError("malformed", "verifier key needs name+id+key")
    name, kid_hex, key_b64 = parts
    if not _KEY_ID_HEX.fullmatch(kid_hex):
        raise VerificationError("malformed", "key id is not 8 lowercase hex digits")
    try:
        raw = decode_base64(key_b64)
        if raw[:1] != ED25519_ALG:
            raise ValueError("algorithm byte is not 0x01 (Ed25519)")
        return Verifier(name, bytes.fromhex(kid_hex), raw[1:])
    except ValueError as exc:
        raise VerificationError("malformed", f"bad verifier key: {exc}") from exc


# Signatures that verified, by a hash of key, signature and message. The
# same signature is often checked more than once: a submission at intake
# and again when its block applies, a cosignature when it is carried in a
# block and again whenever the final checkpoint is looked for. Only
# successes are kept, under all three, so a kept answer is the one
# verifying again would give.
_VERIFIED_KEPT: Final = 8192
_verified: Kept[bytes, bool] = Kept(_VERIFIED_KEPT)


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature (RFC 8032, libsodium's strict rules).

    Any input is accepted; a key or signature of the wrong length, a key
    that is not a valid point and a signature that does not verify all
    raise ``VerificationError("tampered")``.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise VerificationError("tampered", f"public key of {len(public_key)} bytes")
    if len(signature) != SIGNATURE_SIZE:
        raise VerificationError("tampered", f"signature of {len(signature)} bytes")
    # Key and signature have fixed lengths, so the concatenation is unique.
    seen = hashlib.sha256(bytes(public_key) + signature + message).digest()
    if seen in _verified:
        return
    try:
        verify_key = nacl.signing.VerifyKey(bytes(public_key))
        verify_key.verify(bytes(message), bytes(signature))
    except nacl.exceptions.CryptoError as exc:
        raise VerificationError(
            "tampered", "Ed25519 signature does not verify"
        ) from exc
    _verified.put(seen, True)


class SigningKey:
    """An Ed25519 private key. Its ``repr`` shows the public key only."""

    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        """Precondition: ``seed`` is 32 bytes (``ValueError`` otherwise)."""
        if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes")
        self._key = nacl.signing.SigningKey(seed)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the operating system's random source."""
        return cls(os.urandom(SEED_SIZE))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key for a 32-byte seed (``ValueError`` on another length)."""
        return cls(seed)

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return bytes(self._key.sign(bytes(message)).signature)

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self.public_key.hex()})"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the seed as one lowercase hex line to a new file, mode 0600.

        Precondition: nothing exists at ``path``. An existing file is never
        overwritten (that would destroy a key): ``ConfigError`` instead.
        """
        try:
            # O_EXCL also refuses a symlink planted at path, so the seed
            # cannot be redirected into a file someone else can read.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        except OSError as exc:
            raise ConfigError(f"cannot create key file {path}: {exc}") from exc
        with os.fdopen(fd, "w", encoding="ascii") as out:
            os.fchmod(fd, KEY_FILE_MODE)  # exact mode whatever the umask
            out.write(self.seed.hex() + "\n")
            out.flush()
            os.fsync(fd)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a key file written by ``save``; ``ConfigError`` if missing or bad."""
        try:
            text = Path(path).read_text(encoding="ascii")
        except OSError as exc:
            raise ConfigError(f"cannot read key file {path}: {exc}") from exc
        except UnicodeDecodeError:
            raise ConfigError(
                f"{path} is not a key file (one line of 64 hex digits)"
            ) from None
        match = _SEED_LINE.fullmatch(text)
        if match is None:
            raise ConfigError(f"key file {path} is not one line of 64 hex digits")
        return cls(bytes.fromhex(match.group(1)))
