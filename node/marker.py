"""What tells a node whose data folder was lost from one that never ran.

Both start with an empty Raft log, term 0 and no vote. A node that never
ran may vote at once: it acknowledged nothing. One whose folder was deleted
(a disk replaced, an operator's ``rm -rf``) acknowledged entries and cast
votes that are gone: voting with an empty log could then help a stale node
win and drop entries committed with its own earlier acknowledgements (a
review reproduced exactly that fork on real nodes). Such a node must not
vote until it has caught up (``consensus.raft.Raft.passive``).

So before the node first saves Raft state, it leaves a marker file beside
the data folder (``DIR/ID/.data-created`` for ``DIR/ID/data``), where
deleting the folder does not take it: an empty log with the marker there
means the folder was lost. Without the marker (a node's first start, or a
marker that could not be written or was deleted with the folder) the node
votes as Raft always did.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from consensus.storage import LogStorage

logger = logging.getLogger(__name__)


def _blank(storage: LogStorage) -> bool:
    hard, _ = storage.initial_state()
    return hard.term == 0 and storage.last_index() == 0


class DataMarker:
    """The marker of one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir.parent / f".{data_dir.name}-created"
        self._held = self.path.exists()
        self._failed = False

    def lost(self, storage: LogStorage) -> bool:
        """Whether ``storage`` is empty although it once held Raft state."""
        return self._held and _blank(storage)

    def before_save(self) -> None:
        """Leave the marker, synced, before Raft state is first saved: a vote
        or an acknowledgement then never leaves a node that could lose its
        folder unrecognized. Cheap once done (or once it failed)."""
        if self._held or self._failed:
            return
        try:
            with open(self.path, "w", encoding="utf-8") as out:
                out.write(
                    "This node's data folder held Raft state. If the folder is "
                    "lost, the node will not vote until it has caught up.\n"
                )
                out.flush()
                os.fsync(out.fileno())
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as exc:
            self._failed = True
            logger.warning(
                "cannot leave the data marker path=%s: %s (a lost data folder "
                "would not be recognized)",
                self.path,
                exc,
            )
            return
        self._held = True
