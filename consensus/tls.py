"""TLS 1.3 between nodes: certificates from node keys, pinned to the trust list.

Theory of operation. Every node holds an Ed25519 node key; the trust list
maps each agency id to the public half. A peer is accepted when it proves,
inside a TLS 1.3 handshake, that it holds the private key listed for the
agency id it claims. Two checks make that proof:

1. The TLS 1.3 CertificateVerify message. OpenSSL always checks it against
   the public key in the peer's leaf certificate, so whoever completes the
   handshake holds that key. Both sides require a certificate
   (``CERT_REQUIRED``), so a peer without one never completes a handshake.
2. The pin (``check_peer``). After the handshake the leaf certificate's key
   must equal the trust-list key of the agency the peer claims: the one we
   dialled, or the one named in the hello frame of an inbound connection.

Why not plain self-signed certificates: OpenSSL refuses a self-signed peer
certificate unless that exact certificate sits in the trust store, Python's
``ssl`` offers no verify callback to override it, and peers know each
other's keys (the trust list), not each other's certificates. So every node
certificate is issued by one fixed issuer whose private key is public by
design (derived from ``ISSUER_SEED_LABEL``). The chain check it enables is a
formality that lets OpenSSL request and accept client certificates; it
proves nothing, and nothing relies on it. Identity rests on steps 1 and 2
only, and the pin reads the key from the leaf, never from the chain.

Certificates are deterministic: fixed dates, a serial derived from the key
and Ed25519's deterministic signatures give the same bytes on every call.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from typing import Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.errors import ConfigError, VerificationError

# Public on purpose: see the module docstring. Changing it splits the cluster.
ISSUER_SEED_LABEL: Final = b"agency-ledger/tls-pin-only-issuer/v1"
ISSUER_NAME: Final = "agency-ledger pin-only issuer"
# RFC 5280 §4.1.2.5: 99991231235959Z means "no well-defined expiration";
# rotation happens through the trust list, not through certificate expiry.
NOT_BEFORE: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER: Final = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
AGENCY_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,39}")
PUBLIC_KEY_SIZE: Final = 32


class NodeKey(Protocol):
    """What the TLS layer needs of a node key (``ledger.keys.SigningKey`` fits)."""

    @property
    def seed(self) -> bytes: ...

    @property
    def public_key(self) -> bytes: ...


def check_agency_id(agency_id: str) -> None:
    """Raise ``ConfigError`` unless ``agency_id`` matches ``AGENCY_ID``."""
    if not AGENCY_ID.fullmatch(agency_id):
        raise ConfigError(f"invalid agency id {agency_id!r}")


def _issuer_key() -> ed25519.Ed25519PrivateKey:
    seed = hashlib.sha256(ISSUER_SEED_LABEL).digest()
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issuer_certificate() -> x509.Certificate:
    """The fixed issuer certificate every node loads as its only trust anchor."""
    key = _issuer_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(ISSUER_NAME))
        .issuer_name(_name(ISSUER_NAME))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
    )
    return builder.sign(key, None)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def node_certificate(agency_id: str, key: NodeKey) -> x509.Certificate:
    """The certificate for ``key`` naming ``agency_id`` (CN and DNS SAN).

    Precondition: ``agency_id`` matches ``AGENCY_ID`` (``ConfigError``).
    """
    check_agency_id(agency_id)
    public = ed25519.Ed25519PublicKey.from_public_bytes(key.public_key)
    digest = hashlib.sha256(agency_id.encode() + b"\n" + key.public_key).digest()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(agency_id))
        .issuer_name(_name(ISSUER_NAME))
        .public_key(public)
        # RFC 5280 asks for a positive serial of at most 20 bytes.
        .serial_number(int.from_bytes(digest[:16], "big") | 1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(agency_id)]), False)
    )
    return builder.sign(_issuer_key(), None)


def _load_identity(ctx: ssl.SSLContext, agency_id: str, key: NodeKey) -> None:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(key.seed)
    pem = node_certificate(agency_id, key).public_bytes(
        serialization.Encoding.PEM
    ) + private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        with _identity_file(pem) as path:
            ctx.load_cert_chain(path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS identity of {agency_id}") from exc


@contextlib.contextmanager
def _identity_file(pem: bytes) -> Iterator[str]:
    """A path holding ``pem`` (a private key) for as long as the block runs.

    SSLContext loads keys from files only. An anonymous memory file keeps
    the key off the disk; elsewhere, a private temporary directory.
    """
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("agency-ledger-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as tmp:  # created mode 0700
        path = os.path.join(tmp, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        yield path


def _context(*, server: bool, agency_id: str, key: NodeKey) -> ssl.SSLContext:
    purpose = ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    # Names are checked by the pin, against the trust list, not by OpenSSL.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    issuer_pem = issuer_certificate().public_bytes(serialization.Encoding.PEM)
    ctx.load_verify_locations(cadata=issuer_pem.decode("ascii"))
    _load_identity(ctx, agency_id, key)
    return ctx


def server_context(agency_id: str, key: NodeKey) -> ssl.SSLContext:
    """A TLS 1.3 server context that requires a client certificate.

    Callers must still run ``check_peer`` on every accepted connection.
    """
    ctx = _context(server=True, agency_id=agency_id, key=key)
    # No session tickets: every connection runs a full handshake, so every
    # peer proves its key afresh (no resumption with a rotated-out key).
    ctx.num_tickets = 0
    return ctx


def client_context(agency_id: str, key: NodeKey) -> ssl.SSLContext:
    """A TLS 1.3 client context presenting this node's certificate.

    Callers must still run ``check_peer`` against the agency they dialled.
    """
    return _context(server=False, agency_id=agency_id, key=key)


def peer_public_key(tls: ssl.SSLObject | ssl.SSLSocket) -> bytes:
    """The raw Ed25519 key of the peer's leaf certificate.

    Raises ``VerificationError("malformed")`` if there is no certificate or
    its key is not Ed25519.
    """
    der = tls.getpeercert(binary_form=True)
    if not der:
        raise VerificationError("malformed", "peer presented no certificate")
    try:
        public = x509.load_der_x509_certificate(der).public_key()
    except ValueError as exc:
        raise VerificationError("malformed", "unreadable peer certificate") from exc
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise VerificationError("malformed", "peer certificate key is not Ed25519")
    return public.public_bytes_raw()


def check_peer(
    tls: ssl.SSLObject | ssl.SSLSocket,
    claimed_id: str,
    peer_keys: Mapping[str, bytes],
) -> None:
    """Accept the peer only if its certificate key is ``claimed_id``'s node key.

    ``peer_keys`` maps agency id to node public key as the trust list says
    now. Raises ``VerificationError`` with reason ``unknown_issuer`` for an
    agency not in ``peer_keys`` or a key other than the listed one (a peer
    impersonating another agency, or a rotated-out key), ``malformed`` for
    a missing or non-Ed25519 certificate.
    """
    presented = peer_public_key(tls)
    expected = peer_keys.get(claimed_id)
    if expected is None:
        raise VerificationError("unknown_issuer", f"agency {claimed_id!r} unknown")
    if len(expected) != PUBLIC_KEY_SIZE or presented != expected:
        raise VerificationError(
            "unknown_issuer",
            f"key {presented.hex()} is not the node key of {claimed_id!r}",
        )
