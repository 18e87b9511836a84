"""QR codes that open a document's verify page.

The QR target is ``{public_url}/v/{doc_id hex}#{salt hex}``. The salt rides in
the URL fragment because browsers never send the fragment to a server: the
node learns which document was looked up, never the salt, so the node's logs
cannot be used to test guessed documents against the ledger.

Codes are made at error correction level M (about 15% of the modules can be
lost: a folded or slightly smudged paper copy still scans) and must fit in
version 10 (57x57 modules), which a phone camera reads reliably at the size
printed on an A4 certificate. A 64-hex doc id, a 32-hex salt and a public URL
of ordinary length come to about version 8.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Literal
from urllib.parse import urlsplit

import segno

from ledger.kept import Kept

logger = logging.getLogger(__name__)

DOC_ID_SIZE: Final = 32
SALT_SIZE: Final = 16
ERROR_LEVEL: Final = "m"
MAX_VERSION: Final = 10
# Pixels per module and the quiet zone in modules (ISO/IEC 18004 asks for 4).
PNG_SCALE: Final = 8
QUIET_ZONE: Final = 4
# The light modules and the quiet zone, in both images: opaque white.
LIGHT: Final = "#fff"


def qr_url(public_url: str, doc_id: bytes, salt: bytes) -> str:
    """The verify-page URL a document's QR code points to.

    ``public_url`` is the node's public base URL (``http`` or ``https``, with
    no query or fragment; a trailing slash is ignored). ``doc_id`` is 32
    bytes and ``salt`` 16 bytes. Raises ``ValueError`` otherwise.
    """
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"public_url must be an http(s) URL: {public_url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"public_url has a query or fragment: {public_url!r}")
    if len(doc_id) != DOC_ID_SIZE:
        raise ValueError(f"doc_id must be {DOC_ID_SIZE} bytes, got {len(doc_id)}")
    if len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes, got {len(salt)}")
    return f"{public_url.rstrip('/')}/v/{doc_id.hex()}#{salt.hex()}"


def check_fits(public_url: str) -> None:
    """ValueError unless ``public_url`` makes valid verify URLs whose QR
    codes fit in version 10: checked before a node serves, or an anchor
    sends anything, with that URL."""
    _make(qr_url(public_url, bytes(DOC_ID_SIZE), bytes(SALT_SIZE)))


def _make(url: str) -> segno.QRCode:
    # boost_error=False keeps the level at exactly M: segno would otherwise
    # raise it whenever the same version has room, and the level is part of
    # what we promise printers.
    code = segno.make(url, error=ERROR_LEVEL, boost_error=False, micro=False)
    # segno types the version as int | str because Micro QR versions are
    # named ("M4"); with micro=False it is always an int.
    version = code.version
    if not isinstance(version, int) or version > MAX_VERSION:
        raise ValueError(
            f"QR code for a {len(url)}-character URL needs version "
            f"{version} > {MAX_VERSION}; shorten the public URL"
        )
    logger.debug("qr made version=%s chars=%d", version, len(url))
    return code


def qr_png(url: str) -> bytes:
    """A PNG image of the QR code for ``url`` (black on white).

    Raises ``ValueError`` if the code would need a version above 10.
    """
    buf = io.BytesIO()
    _make(url).save(buf, kind="png", scale=PNG_SCALE, border=QUIET_ZONE, light=LIGHT)
    return buf.getvalue()


def qr_svg(url: str) -> str:
    """A standalone SVG document of the QR code for ``url`` (black on an
    opaque white square that covers the quiet zone too).

    Raises ``ValueError`` if the code would need a version above 10.
    """
    buf = io.BytesIO()
    _make(url).save(
        buf,
        kind="svg",
        xmldecl=True,
        scale=PNG_SCALE,
        border=QUIET_ZONE,
        # segno leaves the light modules transparent by default: on a dark
        # page or a viewer in dark mode the code turned light-on-dark with
        # no quiet zone, and phones did not read it.
        light=LIGHT,
        title="QR code",
        svgclass=None,
        lineclass=None,
    )
    return buf.getvalue().decode("utf-8")


QrKind = Literal["png", "svg"]
_RENDER: Final[dict[str, Callable[[str], bytes]]] = {
    "png": qr_png,
    "svg": lambda url: qr_svg(url).encode("utf-8"),
}


class QrBusyError(Exception):
    """More QR images are waiting to be made than ``QrRenderer`` queues."""


class QrRenderer:
    """Makes a node's QR images one at a time, in a thread of its own.

    An image is some 20 ms of pure Python holding the interpreter lock.
    Made in the web framework's pool of 40 threads, a flood of requests for
    them (anyone can ask, for any id and salt) starved the event loop that
    runs Raft until the leader lost its place. With one rendering thread the
    loop keeps at least an even share of the lock; at most ``queue``
    requests wait, and the next gets ``QrBusyError`` (a 503). The last
    ``kept`` images made are kept: a holder fetching theirs again costs
    nothing.
    """

    def __init__(self, *, queue: int = 16, kept: int = 256) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="qr")
        self._queue = queue
        self._waiting = 0
        self._kept: Kept[tuple[str, str], bytes] = Kept(kept)

    async def render(self, kind: QrKind, url: str) -> bytes:
        """The image of ``url``; ValueError if it would need a version
        above 10, QrBusyError if too many are waiting."""
        found = self._kept.get((kind, url))
        if found is not None:
            return found
        if self._waiting >= self._queue:
            raise QrBusyError(f"{self._waiting} QR images are waiting to be made")
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            image = await loop.run_in_executor(self._pool, _RENDER[kind], url)
        finally:
            self._waiting -= 1
        self._kept.put((kind, url), image)
        return image
