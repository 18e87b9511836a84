"""QR codes: the exact URL comes back through a real decoder (zbar)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import segno
from PIL import Image
from pyzbar import pyzbar

from api.qr import MAX_VERSION, qr_png, qr_svg, qr_url

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


def test_too_long_url_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        qr_png("https://example.org/" + "a" * 400)
    with pytest.raises(ValueError, match="version"):
        qr_svg("https://example.org/" + "a" * 400)


def test_svg_is_well_formed_and_complete() -> None:
    url = qr_url(PUBLIC_URL, DOC_ID, SALT)
    svg = qr_svg(url)
    assert svg.startswith("<?xml")
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG_NS}svg"
    assert root.find(f"{SVG_NS}path") is not None
    assert int(root.attrib["width"]) == int(root.attrib["height"]) > 0


def _rasterise(svg: str) -> Image.Image:
    """Draw segno's one-path SVG (M, m and h commands only) for the decoder.

    Rendering the SVG ourselves keeps the test off any SVG library while still
    checking the drawn modules, not just the XML, with a real decoder.
    """
    root = ET.fromstring(svg.encode("utf-8"))
    size = int(root.attrib["width"])
    path = root.find(f"{SVG_NS}path")
    assert path is not None
    assert path.attrib["transform"] == "scale(8)"
    image = Image.new("L", (size, size), 255)
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
