"""Shared fixtures: where the public test vectors live."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_TESTDATA = ROOT.parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The public vectors (Merkle probes, Wycheproof, signed notes)."""
    if not SHARED_TESTDATA.is_dir():
        pytest.fail(f"public test vectors not found at {SHARED_TESTDATA}")
    return SHARED_TESTDATA
