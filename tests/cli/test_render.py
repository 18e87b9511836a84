"""How the commands write times: any u64 the ledger takes, without a crash."""

from __future__ import annotations

import pytest

from cli.render import fmt_time


@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        (None, ""),
        (0, "1970-01-01 00:00:00 UTC"),
        (1_767_225_600_000, "2026-01-01 00:00:00 UTC"),
        (253_402_300_799_000, "9999-12-31 23:59:59 UTC"),
        (253_402_300_800_000, "after 9999 (253402300800000 ms since 1970)"),
        (2**64 - 1, f"after 9999 ({2**64 - 1} ms since 1970)"),
    ],
)
def test_times_are_shown_in_utc_and_past_9999_as_the_raw_value(
    ms: int | None, shown: str
) -> None:
    assert fmt_time(ms) == shown
