"""QR codes: the exact URL comes back through a real decoder (zbar); a
node makes them one at a time and refuses a flood (api.qr.QrRenderer)."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import segno
from PIL import Image
from pyzbar import pyzbar

import api.qr
from api.qr import (
    MAX_VERSION,
    QrBusyError,
    QrKind,
    QrRenderer,
    check_fits,
    qr_png,
    qr_svg,
    qr_url,
)

DOC_ID = bytes(range(32))
SALT = bytes(range(100, 116))
PUBLIC_URL = "https://xacthuc.songxanh.gov.vn"
SVG_NS = "{http://www.w3.org/2000/svg}"


def test_url_puts_salt_in_fragment() -> None:
    url = qr_url(PUBLIC_URL + "/", DOC_ID, SALT)
    assert url == f"{PUBLIC_URL}/v/{DOC_ID.hex()}#{SALT.hex()}"
    # Everything before '#' is what a browser sends; the salt is not in it.
    assert SALT.hex() not in url.split("#", 1)[0]


@pytest.mark.parametrize(
    ("public_url", "doc_id", "salt"),
    [
        ("ftp://example.org", DOC_ID, SALT),
        ("example.org", DOC_ID, SALT),
        ("https://example.org/?a=1", DOC_ID, SALT),
        ("https://example.org/#x", DOC_ID, SALT),
        (PUBLIC_URL, DOC_ID[:31], SALT),
        (PUBLIC_URL, DOC_ID, SALT + b"\x00"),
    ],
)
def test_url_rejects_bad_input(public_url: str, doc_id: bytes, salt: bytes) -> None:
    with pytest.raises(ValueError):
        qr_url(public_url, doc_id, salt)


def test_png_decodes_to_exact_url_with_pyzbar() -> None:
    url = qr_url(PUBLIC_URL, DOC_ID, SALT)
    image = Image.open(io.BytesIO(qr_png(url)))
    assert image.format == "PNG"
    decoded = pyzbar.decode(image)
    assert [d.data.decode("ascii") for d in decoded] == [url]
    assert decoded[0].type == "QRCODE"


@pytest.mark.skipif(shutil.which("zbarimg") is None, reason="zbarimg not installed")
def test_png_decodes_to_exact_url_with_zbarimg(tmp_path: Path) -> None:
    url = qr_url("http://127.0.0.1:8080", b"\xff" * 32, b"\x00" * 16)
    path = tmp_path / "qr.png"
    path.write_bytes(qr_png(url))
    out = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert out.stdout.decode("ascii").rstrip("\n") == url


def test_version_and_level() -> None:
    # A long-ish but plausible public URL still fits the version cap.
    url = qr_url("https://xac-thuc-van-ban.so-tu-phap.songxanh.gov.vn", DOC_ID, SALT)
    code = segno.make(url, error="m", boost_error=False, micro=False)
    assert isinstance(code.version, int)
    assert code.version <= MAX_VERSION
    assert code.error == "M"
    # The PNG is exactly that symbol: (modules + 2 * quiet zone) * scale.
    size = (code.symbol_size(scale=1, border=4))[0] * 8
    assert Image.open(io.BytesIO(qr_png(url))).size == (size, size)
    # So is the SVG, its white square included.
    assert _layers(qr_svg(url))[0] == size


def test_too_long_url_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        qr_png("https://example.org/" + "a" * 400)
    with pytest.raises(ValueError, match="version"):
        qr_svg("https://example.org/" + "a" * 400)


def _layers(svg: str) -> tuple[int, ET.Element, ET.Element]:
    """The SVG's size and its two paths, the light one under the dark one:
    ``<svg><title/><g transform="scale(8)"><path fill/><path stroke/></g>``."""
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG_NS}svg"
    size = int(root.attrib["width"])
    assert int(root.attrib["height"]) == size > 0
    (group,) = root.findall(f"{SVG_NS}g")
    assert group.attrib["transform"] == "scale(8)"
    light, dark = group.findall(f"{SVG_NS}path")
    return size, light, dark


def test_svg_is_well_formed_and_complete() -> None:
    url = qr_url(PUBLIC_URL, DOC_ID, SALT)
    svg = qr_svg(url)
    assert svg.startswith("<?xml")
    *_, dark = _layers(svg)
    assert dark.attrib["stroke"] == "#000"
    assert dark.attrib["d"].startswith("M")


def test_svg_has_an_opaque_white_background_under_the_whole_symbol() -> None:
    """Regression: the light modules and quiet zone were transparent, so on a
    dark page or in a dark-mode viewer the code showed light-on-dark with no
    quiet zone, and phones could not read it."""
    size, light, _ = _layers(qr_svg(qr_url(PUBLIC_URL, DOC_ID, SALT)))
    assert light.attrib["fill"] == "#fff"
    assert "fill-opacity" not in light.attrib and "opacity" not in light.attrib
    # One square from the corner over every module, quiet zone included.
    side = size // 8
    assert light.attrib["d"] == f"M0 0h{side}v{side}h-{side}z"


def test_png_has_an_opaque_white_background() -> None:
    image = Image.open(io.BytesIO(qr_png(qr_url(PUBLIC_URL, DOC_ID, SALT))))
    assert "transparency" not in image.info
    assert image.mode in ("1", "L", "RGB")  # no alpha channel
    assert image.convert("L").getpixel((0, 0)) == 255


# Where nothing of the SVG was drawn: the decoder gets a transparent image
# (as on a dark page) unless the SVG paints every pixel itself.
UNPAINTED = 0


def _rasterise(svg: str) -> Image.Image:
    """Draw segno's SVG for the decoder: the light square (``M0 0hNvNh-Nz``),
    then the dark modules (M, m and h commands only).

    Rendering the SVG ourselves keeps the test off any SVG library while still
    checking the drawn modules, not just the XML, with a real decoder.
    """
    size, light, path = _layers(svg)
    image = Image.new("L", (size, size), UNPAINTED)
    square = re.fullmatch(r"M0 0h(\d+)v\1h-\1z", light.attrib["d"])
    assert square is not None
    side = int(square[1]) * 8
    image.paste(255, (0, 0, side, side))
    x = y = 0.0
    for cmd, args in re.findall(r"([Mmh])([-0-9. ]+)", path.attrib["d"]):
        nums = [float(n) for n in args.split()]
        if cmd == "M":
            x, y = nums
        elif cmd == "m":
            x, y = x + nums[0], y + nums[1]
        else:
            # A stroke of width 1 centred on y covers module row floor(y).
            row = int(y)
            for col in range(int(x), int(x + nums[0])):
                for dy in range(8):
                    for dx in range(8):
                        image.putpixel((col * 8 + dx, row * 8 + dy), 0)
            x += nums[0]
    return image


def test_svg_decodes_to_exact_url() -> None:
    url = qr_url(PUBLIC_URL, DOC_ID, SALT)
    decoded = pyzbar.decode(_rasterise(qr_svg(url)))
    assert [d.data.decode("ascii") for d in decoded] == [url]


def test_a_public_url_too_long_for_a_qr_code_is_found_before_use() -> None:
    check_fits(PUBLIC_URL)
    with pytest.raises(ValueError, match="version"):
        check_fits("https://verify." + "x" * 120 + ".gov.vn")
    with pytest.raises(ValueError, match="http"):
        check_fits("ftp://example.org")


def test_the_renderer_makes_one_at_a_time_keeps_what_it_made_and_refuses_a_flood(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of QR requests must not occupy more than one thread (the
    event loop that runs Raft keeps its share); beyond the queue: busy."""
    running: list[int] = []
    most = [0]
    real_png = api.qr._RENDER["png"]

    def slow_png(url: str) -> bytes:
        running.append(1)
        most[0] = max(most[0], len(running))
        time.sleep(0.01)
        running.pop()
        return real_png(url)

    monkeypatch.setitem(api.qr._RENDER, "png", slow_png)
    renderer = QrRenderer(queue=4, kept=8)
    urls = [qr_url(PUBLIC_URL, DOC_ID, bytes([n]) * 16) for n in range(6)]

    async def flood() -> list[bytes | BaseException]:
        return await asyncio.gather(
            *(renderer.render("png", u) for u in urls), return_exceptions=True
        )

    answers = asyncio.run(flood())
    made = [a for a in answers if isinstance(a, bytes)]
    busy = [a for a in answers if isinstance(a, QrBusyError)]
    assert (len(made), len(busy), most[0]) == (4, 2, 1)
    for url, image in zip(urls, answers, strict=True):
        if isinstance(image, bytes):
            assert _decoded(image) == url
    # Made before: kept, so neither queued nor made again.
    monkeypatch.setitem(api.qr._RENDER, "png", lambda url: b"not made again")
    assert asyncio.run(renderer.render("png", urls[0])) == made[0]


def test_a_busy_renderer_is_a_503_with_retry_after() -> None:
    from starlette.testclient import TestClient

    from api.app import create_app
    from tests.api.stubnode import BASE, StubNode

    class Busy(QrRenderer):
        async def render(self, kind: QrKind, url: str) -> bytes:
            raise QrBusyError("16 QR images are waiting to be made")

    app = create_app(StubNode(None), public_url=BASE)  # type: ignore[arg-type]
    app.state.qr = Busy()
    with TestClient(app) as client:
        answer = client.get(f"/v1/documents/{DOC_ID.hex()}/qr.png")
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["type"].endswith("/unavailable")


def _decoded(png: bytes) -> str:
    found = pyzbar.decode(Image.open(io.BytesIO(png)))
    assert len(found) == 1
    return str(found[0].data.decode())
