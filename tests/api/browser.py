"""Drive Debian's headless Chromium from tests, without Selenium.

Three tools, for this suite and for later ones against a real cluster:

- ``serve(app)``: run an ASGI app with uvicorn on ``127.0.0.1`` (a free port)
  in a background thread, for as long as a ``with`` block lasts. 127.0.0.1
  counts as a secure context, so WebCrypto works over plain http.
- ``dump_dom(url)`` and ``screenshot(url, path)``: one-shot ``chromium
  --headless`` runs, for pages that need no interaction.
- ``Browser``: a W3C WebDriver session with ``/usr/bin/chromedriver``,
  spoken over httpx (navigate, find, read text, click, upload a file, run a
  script, take a screenshot).

Every Chromium gets the flags in ``CHROMIUM_FLAGS`` (no sandbox: tests may run
as root in a container; no background networking, sync or component updates:
a test must not talk to Google) and a fresh ``--user-data-dir``.
"""

from __future__ import annotations

import base64
import logging
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMEDRIVER: Final = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# A common phone viewport (CSS pixels); the verify page is read on phones.
PHONE: Final = (412, 915)
# The narrowest phones in use; the page must not scroll sideways here.
SMALL_PHONE: Final = (360, 740)
ELEMENT_KEY: Final = "element-6066-11e4-a52e-4f735466cecf"
SKIP_REASON: Final = (
    f"Debian's chromium is not installed at {CHROMIUM} (run `make debian-test`)"
)
requires_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)
# Screenshots taken in this session, listed at the end of the pytest run.
SCREENSHOTS: list[Path] = []

T = TypeVar("T")


class BrowserError(Exception):
    """Chromium or chromedriver failed, or a wait ran out."""


def free_port() -> int:
    # NB: the port is free when we return; something else could take it before
    # chromedriver binds it. Good enough on a test machine.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: ASGIApp, *, timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1; yields its base URL (no trailing slash)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True
    )
    thread.start()
    try:
        _wait(lambda: server.started or None, timeout, "uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def _run_chromium(args: list[str], *, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            done = subprocess.run(
                cmd, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BrowserError(f"chromium timed out after {timeout}s: {args}") from exc
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")[-2000:]
        raise BrowserError(f"chromium exited {done.returncode}: {stderr}")
    return done.stdout.decode("utf-8")


def dump_dom(url: str, *, timeout: float = 30.0) -> str:
    """The DOM of ``url`` after its scripts ran, serialised as HTML."""
    return _run_chromium(["--dump-dom", url], timeout=timeout)


def screenshot(
    url: str, path: Path, *, window: tuple[int, int] = PHONE, timeout: float = 30.0
) -> Path:
    """A PNG screenshot of ``url`` at ``window`` (CSS pixels) saved to ``path``."""
    width, height = window
    args = [f"--screenshot={path}", f"--window-size={width},{height}", url]
    _run_chromium(args, timeout=timeout)
    if not path.is_file():
        raise BrowserError(f"chromium wrote no screenshot to {path}")
    SCREENSHOTS.append(path)
    return path


def _wait(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise BrowserError(f"timed out after {timeout}s: {what}")
        time.sleep(0.05)


class Browser:
    """One headless Chromium driven by chromedriver (W3C WebDriver).

    Use as a context manager; ``close`` ends the session (chromedriver then
    stops Chromium) and stops chromedriver.
    """

    def __init__(
        self, *, window: tuple[int, int] = PHONE, timeout: float = 30.0
    ) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        profile = Path(self._profile.name)
        port = free_port()
        self._log = (profile / "chromedriver.log").open("wb")
        self._driver = subprocess.Popen(
            [str(CHROMEDRIVER), f"--port={port}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout)
        self._session: str | None = None
        try:
            _wait(self._driver_ready, 15.0, "chromedriver did not start")
            width, height = window
            args = [
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile / 'chromium'}",
                f"--window-size={width},{height}",
            ]
            # Headless windows are at least 500 px wide; device emulation
            # gives the page a true phone-sized viewport.
            metrics = {"width": width, "height": height, "pixelRatio": 1.0}
            options = {
                "binary": str(CHROMIUM),
                "args": args,
                "mobileEmulation": {"deviceMetrics": metrics},
            }
            caps = {"browserName": "chrome", "goog:chromeOptions": options}
            answer = self._http.post(
                "/session", json={"capabilities": {"alwaysMatch": caps}}
            )
            self._session = str(self._value(answer)["sessionId"])
        except BaseException:
            self.close()
            raise
        logger.debug("webdriver session=%s port=%d", self._session, port)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            try:
                self._http.delete(f"/session/{self._session}")
            except httpx.HTTPError:
                logger.warning("could not end webdriver session=%s", self._session)
            self._session = None
        self._http.close()
        self._driver.terminate()
        try:
            self._driver.wait(10)
        except subprocess.TimeoutExpired:
            self._driver.kill()
            self._driver.wait(10)
        self._log.close()
        self._profile.cleanup()

    def _driver_ready(self) -> bool | None:
        try:
            return bool(self._http.get("/status").json()["value"]["ready"]) or None
        except httpx.HTTPError:
            return None

    @staticmethod
    def _value(answer: httpx.Response) -> Any:
        body = answer.json()
        value = body.get("value") if isinstance(body, dict) else None
        if answer.status_code != 200:
            error = value.get("error") if isinstance(value, dict) else value
            message = value.get("message") if isinstance(value, dict) else ""
            raise BrowserError(f"webdriver {answer.status_code} {error}: {message}")
        return value

    def _call(self, method: str, path: str, body: object = None) -> Any:
        if self._session is None:
            raise BrowserError("no webdriver session")
        url = f"/session/{self._session}{path}"
        if method == "GET":
            return self._value(self._http.get(url))
        return self._value(self._http.request(method, url, json=body or {}))

    # Navigation and scripts.

    def get(self, url: str) -> None:
        """Load ``url`` and wait for the load event."""
        self._call("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return str(self._call("GET", "/url"))

    def execute(self, script: str, *args: object) -> Any:
        """Run ``script`` as a function body (``arguments[i]``); its return."""
        return self._call(
            "POST", "/execute/sync", {"script": script, "args": list(args)}
        )

    # Elements, by CSS selector; the returned string is the element's id.

    def find(self, css: str) -> str:
        found = self._call("POST", "/element", {"using": "css selector", "value": css})
        return str(found[ELEMENT_KEY])

    def find_all(self, css: str) -> list[str]:
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [str(item[ELEMENT_KEY]) for item in found]

    def text(self, element: str) -> str:
        """The element's rendered text; empty if it is not displayed."""
        return str(self._call("GET", f"/element/{element}/text"))

    def attribute(self, element: str, name: str) -> str | None:
        value = self._call("GET", f"/element/{element}/attribute/{name}")
        return None if value is None else str(value)

    def enabled(self, element: str) -> bool:
        return bool(self._call("GET", f"/element/{element}/enabled"))

    def click(self, element: str) -> None:
        self._call("POST", f"/element/{element}/click")

    def scroll_to(self, element: str) -> None:
        """Scroll so the element sits in the middle of the viewport."""
        script = "arguments[0].scrollIntoView({block: 'center'})"
        self.execute(script, {ELEMENT_KEY: element})

    def send_keys(self, element: str, text: str) -> None:
        self._call("POST", f"/element/{element}/value", {"text": text})

    def upload(self, element: str, path: Path) -> None:
        """Choose the local file ``path`` in an ``<input type=file>``."""
        # chromedriver runs on this machine, so it reads the path directly.
        self.send_keys(element, str(path.resolve()))

    def wait_for(
        self, probe: Callable[[], T | None], *, timeout: float = 10.0, what: str = ""
    ) -> T:
        """Poll ``probe`` until it returns something other than None/False."""
        return _wait(probe, timeout, what or "condition")

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to ``path``."""
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        SCREENSHOTS.append(path)
        return path


def settled(browser: Browser, probe: Callable[[], T | None], what: str) -> T:
    """Wait for ``probe``, treating a page still loading as 'not yet'."""

    def safe() -> T | None:
        try:
            return probe()
        except BrowserError:
            return None

    return browser.wait_for(safe, what=what)


def banner(browser: Browser) -> str:
    """The verify page's status banner title, as shown."""
    return browser.text(browser.find("#status-title"))


def save(browser: Browser, path: Path) -> None:
    """A screenshot of the page, checked to be a real PNG."""
    from PIL import Image

    browser.screenshot(path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 0 and image.size[1] > 0
