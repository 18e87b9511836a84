"""Node certificates and pinned mutual TLS 1.3, over real sockets."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtensionOID, NameOID

from consensus.tls import (
    check_peer,
    client_context,
    issuer_certificate,
    node_certificate,
    peer_public_key,
    server_context,
)
from ledger.errors import ConfigError, VerificationError
from ledger.keys import SigningKey

KEY_A = SigningKey.from_seed(bytes([1]) * 32)
KEY_B = SigningKey.from_seed(bytes([2]) * 32)
KEY_MALLORY = SigningKey.from_seed(bytes([9]) * 32)
TRUST = {"agency-a": KEY_A.public_key, "agency-b": KEY_B.public_key}

Sides = tuple[ssl.SSLObject, ssl.SSLObject]


async def _connect(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> Sides:
    """Handshake over 127.0.0.1; (server's view, client's view) of the TLS."""
    accepted: asyncio.Future[ssl.SSLObject] = asyncio.get_running_loop().create_future()
    writers: list[asyncio.StreamWriter] = []

    def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set_result(writer.get_extra_info("ssl_object"))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="peer"
        )
        writers.append(writer)
        client_side = writer.get_extra_info("ssl_object")
        # TLS 1.3 finishes the client first; the server decides on the client
        # certificate only after reading its Finished, and refuses with an
        # alert (or a close) that the client's read then sees.
        writer.write(b"x")

        async def refused() -> ssl.SSLObject:
            await reader.read()
            raise ConnectionError("server closed the connection")

        reading = asyncio.ensure_future(refused())
        await asyncio.wait({accepted, reading}, return_when=asyncio.FIRST_COMPLETED)
        if not accepted.done():
            await reading
        reading.cancel()
        return accepted.result(), client_side
    finally:
        for w in writers:
            w.transport.abort()
        server.close()
        await server.wait_closed()


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 10))


def test_node_certificate_names_the_agency_and_carries_its_key() -> None:
    cert = node_certificate("agency-a", KEY_A)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert cn == "agency-a"
    assert isinstance(san.value, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["agency-a"]
    public = cert.public_key()
    assert isinstance(public, ed25519.Ed25519PublicKey)
    assert public.public_bytes_raw() == KEY_A.public_key
    assert cert.not_valid_after_utc.year == 9999
    assert cert.not_valid_before_utc < datetime.datetime.now(datetime.UTC)
    # Deterministic: the same key and id always give the same certificate.
    assert cert == node_certificate("agency-a", KEY_A)
    cert.verify_directly_issued_by(issuer_certificate())


def test_node_certificate_refuses_a_bad_agency_id() -> None:
    with pytest.raises(ConfigError):
        node_certificate("Agency A", KEY_A)


def test_mutual_handshake_with_pinned_keys_succeeds() -> None:
    async def main() -> None:
        server_side, client_side = await _connect(
            server_context("agency-b", KEY_B), client_context("agency-a", KEY_A)
        )
        assert client_side.version() == "TLSv1.3"
        assert server_side.version() == "TLSv1.3"
        check_peer(server_side, "agency-a", TRUST)
        check_peer(client_side, "agency-b", TRUST)
        assert peer_public_key(server_side) == KEY_A.public_key

    run(main)


def test_peer_with_an_unknown_key_is_refused() -> None:
    async def main() -> None:
        server_side, _ = await _connect(
            server_context("agency-b", KEY_B),
            client_context("mallory", KEY_MALLORY),
        )
        with pytest.raises(VerificationError) as err:
            check_peer(server_side, "mallory", TRUST)
        assert err.value.reason == "unknown_issuer"

    run(main)


def test_peer_claiming_another_agencys_id_is_refused() -> None:
    async def main() -> None:
        # Mallory's certificate even names agency-a; only the key counts.
        server_side, _ = await _connect(
            server_context("agency-b", KEY_B),
            client_context("agency-a", KEY_MALLORY),
        )
        with pytest.raises(VerificationError, match="not the node key"):
            check_peer(server_side, "agency-a", TRUST)
        # A trusted agency claiming to be another one is refused as well.
        server_side, _ = await _connect(
            server_context("agency-b", KEY_B), client_context("agency-a", KEY_A)
        )
        with pytest.raises(VerificationError):
            check_peer(server_side, "agency-b", TRUST)

    run(main)


def test_client_checks_the_server_it_dialled() -> None:
    async def main() -> None:
        _, client_side = await _connect(
            server_context("agency-b", KEY_MALLORY),
            client_context("agency-a", KEY_A),
        )
        with pytest.raises(VerificationError):
            check_peer(client_side, "agency-b", TRUST)

    run(main)


def test_client_without_certificate_is_refused() -> None:
    async def main() -> None:
        bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        bare.check_hostname = False
        bare.verify_mode = ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _connect(server_context("agency-b", KEY_B), bare)

    run(main)


def test_certificate_from_another_issuer_is_refused() -> None:
    async def main() -> None:
        # A self-signed certificate for a trusted key: the pin alone would
        # take it, but it does not chain to the pin-only issuer.
        private = ed25519.Ed25519PrivateKey.from_private_bytes(KEY_A.seed)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agency-a")])
        start = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(7)
            .not_valid_before(start)
            .not_valid_after(start.replace(year=2100))
            .sign(private, None)
        )
        ctx = client_context("agency-a", KEY_A)
        _load_foreign_cert(ctx, cert, private)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _connect(server_context("agency-b", KEY_B), ctx)

    run(main)


def _load_foreign_cert(
    ctx: ssl.SSLContext, cert: x509.Certificate, key: ed25519.Ed25519PrivateKey
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "id.pem"
        path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx.load_cert_chain(path)
