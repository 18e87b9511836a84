"""``ledger.kept.Kept``: bounded, and it starts over when full."""

from __future__ import annotations

import pytest

from ledger.kept import Kept


def test_kept_values_come_back_until_the_limit_starts_it_over() -> None:
    kept: Kept[int, str] = Kept(3)
    for n in range(3):
        kept.put(n, str(n))
    assert [kept.get(n) for n in range(3)] == ["0", "1", "2"]
    assert 2 in kept and len(kept) == 3
    kept.put(3, "3")  # full: starts over with the new one
    assert len(kept) == 1 and kept.get(0) is None and kept.get(3) == "3"


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Kept(0)
