"""``node.marker.DataMarker``: a log is "lost" only if the marker beside its
folder says the folder held Raft state; the marker keeps the term and vote
last saved, gives them back to a lost folder, and keeps a lost node lost
across restarts until it has caught up; never at a node's first start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus.messages import ConfState, Entry, HardState
from consensus.storage import MemoryStorage
from node.marker import DataMarker

CONF = ConfState(voters=("police",))


def _held(term: int = 3, vote: str | None = "justice") -> MemoryStorage:
    storage = MemoryStorage(CONF)
    storage.set_hard_state(HardState(term, vote, 0))
    storage.append([Entry(index=1, term=1, data=b"")])
    return storage


def _ran(data: Path, hard: HardState) -> None:
    """A node that saved ``hard`` (the marker kept ahead of it)."""
    marker = DataMarker(data)
    assert marker.start(MemoryStorage(CONF)) is None
    marker.before_save(hard)


def test_first_start_is_not_a_loss_and_the_marker_goes_ahead_of_each_save(
    tmp_path: Path,
) -> None:
    data = tmp_path / "police" / "data"
    data.mkdir(parents=True)
    marker = DataMarker(data)
    assert marker.start(MemoryStorage(CONF)) is None and not marker.lost
    assert not marker.path.exists()
    marker.before_save(HardState(1, "police", 0))
    assert marker.path == tmp_path / "police" / ".data-created"
    saved = json.loads(marker.path.read_text())
    assert saved == {"term": 1, "vote": "police", "lost": False}
    marker.before_save(HardState(2, None, 5))
    assert json.loads(marker.path.read_text())["term"] == 2


def test_a_lost_folder_gets_its_term_and_vote_back_and_starts_lost(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _ran(data, HardState(4, "justice", 9))
    again = DataMarker(data)  # the folder deleted, the node started again
    assert again.start(MemoryStorage(CONF)) == HardState(4, "justice", 0)
    assert again.lost
    assert json.loads(again.path.read_text())["lost"] is True


def test_a_restart_before_catching_up_is_still_lost(tmp_path: Path) -> None:
    """Its log is no longer empty (the term it got back, entries since),
    but nothing says it has caught up: passive again."""
    data = tmp_path / "data"
    _ran(data, HardState(4, "justice", 9))
    DataMarker(data).start(MemoryStorage(CONF))
    restarted = DataMarker(data)
    assert restarted.start(_held(term=4)) is None
    assert restarted.lost
    restarted.caught_up()
    after = DataMarker(data)
    assert after.start(_held(term=4)) is None and not after.lost


def test_a_node_from_before_markers_gets_one_from_its_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    marker = DataMarker(data)
    assert marker.start(_held(term=7, vote="health")) is None and not marker.lost
    saved = json.loads(marker.path.read_text())
    assert saved == {"term": 7, "vote": "health", "lost": False}


def test_a_marker_that_cannot_be_written_is_said_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parent = tmp_path / "later"
    parent.write_text("a file where the marker's folder should be")
    marker = DataMarker(parent / "data")
    marker.before_save(HardState(1, None, 0))
    marker.before_save(HardState(1, None, 0))
    said = "cannot keep the data marker"
    assert len([r for r in caplog.records if said in r.message]) == 1
    parent.unlink()  # its folder is made as needed
    marker.before_save(HardState(1, None, 0))  # tried again: now it can
    assert marker.path.is_file()


def test_a_marker_elsewhere_is_kept_where_the_configuration_says(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "meta" / "data-created"
    elsewhere.parent.mkdir()
    DataMarker(tmp_path / "data", elsewhere).before_save(HardState(2, None, 0))
    assert json.loads(elsewhere.read_text())["term"] == 2
    assert not (tmp_path / ".data-created").exists()
    assert DataMarker(tmp_path / "data", elsewhere).start(MemoryStorage(CONF))
