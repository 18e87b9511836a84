"""What tells a node whose data folder was lost from one that never ran.

Both start with an empty Raft log, term 0 and no vote. A node that never
ran may vote at once: it acknowledged nothing. One whose folder was deleted
(a disk replaced, an operator's ``rm -rf``) acknowledged entries and cast
votes that are gone: voting with an empty log could then help a stale node
win and drop entries committed with its own earlier acknowledgements (a
review reproduced exactly that fork on real nodes), and voting again in a
term it voted in could make two leaders of one term.

So before the node saves Raft state, it keeps a marker file beside the data
folder (``DIR/ID/.data-created`` for ``DIR/ID/data``, or ``data_marker`` in
node.toml: in docker compose a volume of its own), where deleting the
folder does not take it. The marker holds the term and vote last saved
(rewritten, synced, before any save that changes them: only at elections)
and whether the log is lost. At start:

- no marker: a first start (or a node from before markers, whose marker is
  then written from its state): nothing to guard;
- a marker and an empty log: the folder was lost. The marker is marked
  lost, the term and vote it holds are saved back into the new log (so no
  vote is cast twice in a term), and Raft starts passive
  (``consensus.raft.Raft.passive``);
- a marker marked lost: still lost (a restart before catching up), passive
  again.

Once Raft leaves passive and what made it do so is saved, the node clears
the mark (``caught_up``). Invariant: a marked-lost node grants no vote.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from consensus.messages import HardState
from consensus.storage import LogStorage
from node.throttle import EveryMinute

logger = logging.getLogger(__name__)


def _blank(storage: LogStorage) -> bool:
    hard, _ = storage.initial_state()
    return hard.term == 0 and storage.last_index() == 0


class DataMarker:
    """The marker of one data folder."""

    def __init__(self, data_dir: Path, path: Path | None = None) -> None:
        beside = data_dir.parent / f".{data_dir.name}-created"
        self.path = beside if path is None else path
        self.term = 0
        self.vote: str | None = None
        self.lost = False
        self._held = False  # the file exists and says what the fields say
        self._failures = EveryMinute()
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            rec = json.loads(self.path.read_text("utf-8"))
            term, vote, lost = rec["term"], rec["vote"], rec["lost"]
        except (OSError, ValueError, KeyError, TypeError):
            # Unreadable, or a marker that only said the folder once held
            # state: assume a vote in every term so far (see start).
            term, vote, lost = None, None, False
        if term is not None and not isinstance(term, int):
            term = None
        self.term = -1 if term is None else term
        self.vote = vote if isinstance(vote, str) else None
        self.lost = lost is True
        self._held = True

    def start(self, storage: LogStorage) -> HardState | None:
        """Call before Raft starts on ``storage``. Returns the hard state to
        save into it first (a lost folder's term and vote), or None; after
        it, ``lost`` says whether Raft must start passive."""
        blank = _blank(storage)
        if not self._held:
            if not blank:  # a node from before markers
                hard, _ = storage.initial_state()
                self._write(hard.term, hard.vote, lost=False)
            return None
        if not blank and not self.lost:
            return None
        if self.term < 0:
            # The marker did not say which term: it cannot be below the
            # first, and with no vote known a vote in it is assumed cast.
            self.term = 1
        if not self.lost:
            self._write(self.term, self.vote, lost=True)
        if not blank:
            return None  # restarted while lost: its log has the term already
        return HardState(self.term, self.vote, 0)

    def before_save(self, hard: HardState | None) -> None:
        """Keep the marker ahead of the Raft state about to be saved: a
        term or vote is on the marker before it is on the log, so a vote
        never leaves a node that could lose its folder unrecognized."""
        if self._held and (
            hard is None
            or (hard.term, hard.vote)
            == (
                self.term,
                self.vote,
            )
        ):
            return
        term, vote = (self.term, self.vote) if hard is None else (hard.term, hard.vote)
        self._write(max(term, 0), vote, lost=self.lost)

    def caught_up(self) -> None:
        """Raft left passive and that is saved: the log is whole again."""
        self._write(self.term, self.vote, lost=False)

    def _write(self, term: int, vote: str | None, *, lost: bool) -> None:
        text = json.dumps({"term": term, "vote": vote, "lost": lost})
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as out:
                out.write(text + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:
            # Tried again before the next save; said once a minute.
            if self._failures.count() is not None:
                logger.warning(
                    "cannot keep the data marker path=%s: %s (a lost data "
                    "folder would not be recognized)",
                    self.path,
                    exc,
                )
            return
        self.term, self.vote, self.lost, self._held = term, vote, lost, True
