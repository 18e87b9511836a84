"""Report where the browser tests left their screenshots."""

from __future__ import annotations

import pytest

from tests.api.browser import SCREENSHOTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SCREENSHOTS:
        return
    folders = sorted({str(path.parent) for path in SCREENSHOTS})
    terminalreporter.write_sep("-", f"{len(SCREENSHOTS)} browser screenshots")
    for folder in folders:
        terminalreporter.write_line(folder)
