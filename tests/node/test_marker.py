"""``node.marker.DataMarker``: an empty Raft log is "lost" only if the
folder was about to hold Raft state (the marker beside it, left before the
first save, says so), never at a node's first start."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.messages import ConfState, Entry, HardState
from consensus.storage import MemoryStorage
from node.marker import DataMarker

CONF = ConfState(voters=("police",))


def _held() -> MemoryStorage:
    storage = MemoryStorage(CONF)
    storage.set_hard_state(HardState(1, "police", 0))
    storage.append([Entry(index=1, term=1, data=b"")])
    return storage


def test_first_start_is_not_a_loss_and_the_marker_waits_for_state(
    tmp_path: Path,
) -> None:
    data = tmp_path / "police" / "data"
    data.mkdir(parents=True)
    marker = DataMarker(data)
    blank = MemoryStorage(CONF)
    assert not marker.lost(blank)  # a first start: it may vote
    assert not marker.path.exists()
    marker.before_save()  # the node is about to save its first state
    assert marker.path == tmp_path / "police" / ".data-created"
    assert marker.path.is_file()
    assert not marker.lost(_held())


def test_an_empty_log_beside_the_marker_is_a_lost_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    DataMarker(data).before_save()
    again = DataMarker(data)  # the folder deleted, the node started again
    assert again.lost(MemoryStorage(CONF))
    assert not again.lost(_held())


def test_a_marker_that_cannot_be_written_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = DataMarker(tmp_path / "missing-parent" / "data")
    marker.before_save()
    marker.before_save()
    said = "cannot leave the data marker"
    warnings = [r for r in caplog.records if said in r.message]
    assert len(warnings) == 1
    assert not marker.lost(MemoryStorage(CONF))
