"""The full integrity walk of a large store, in the background.

``LedgerStore.open`` walks every block only of a store of up to
``FULL_CHECK_MAX_LEAVES`` leaves: beyond, the walk would hold up a restart
for longer than the node may take to serve again. So for a bigger store the
node serves at once and walks it here, in a thread of its own, over a
snapshot; a walk that finds the store altered (one byte of a leaf, a log
node, a block) stops the node, naming the block, as ``open`` would have
refused to start it. Until the walk is done the node serves what it has,
as every node does between two restarts.

The walk sleeps after each block, and every ``PACE_VALUES`` state values,
for ``REST`` times as long as the step took, so it takes at most a third of
one processor from the node.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from ledger.errors import CorruptStoreError
from ledger.store import FULL_CHECK_MAX_LEAVES, LedgerStore

logger = logging.getLogger(__name__)

REST: Final = 2.0
# Seconds between warnings while the walk, asked to stop, finishes the step
# it is in (a block of 20,000 leaves, or PACE_VALUES state values: well
# under one).
STOP_WAIT_S: Final = 30.0


class IntegrityWalk:
    """Walks ``store`` once in a daemon thread if ``open`` did not; calls
    ``fatal`` on the loop with the CorruptStoreError if the walk fails."""

    def __init__(
        self,
        store: LedgerStore,
        fatal: Callable[[BaseException], None],
        *,
        rest: float = REST,
    ) -> None:
        self._store = store
        self._fatal = fatal
        self._rest = rest
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()  # set when the walk ended, however

    @staticmethod
    def needed(store: LedgerStore) -> bool:
        """Whether ``open`` left the walk to us."""
        return store.tree_size > FULL_CHECK_MAX_LEAVES

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._thread = threading.Thread(
            target=self._walk, args=(loop,), name="integrity", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """End the walk at its next pause, and wait until it has: the store
        must not be closed (the node stopping) or swapped (a snapshot
        installed) under a read in another thread."""
        self._stop.set()
        thread = self._thread
        while thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, STOP_WAIT_S)
            if thread.is_alive():
                logger.warning("integrity walk still running; waiting for it")

    def _walk(self, loop: asyncio.AbstractEventLoop) -> None:
        started = last = time.monotonic()

        def pace(_done: int) -> None:
            nonlocal last
            if self._stop.wait(self._rest * (time.monotonic() - last)):
                raise _WalkStoppedError
            last = time.monotonic()

        height = self._store.height
        logger.info("integrity walk started height=%d", height)
        try:
            self._store.verify_integrity(full=True, pace=pace)
        except _WalkStoppedError:
            logger.info("integrity walk stopped: the node is stopping")
        except CorruptStoreError as exc:
            logger.error(
                "stopping: store corrupt at height=%s: %s (found by the "
                "integrity walk)",
                exc.height,
                exc,
            )
            loop.call_soon_threadsafe(self._fatal, exc)
        except RuntimeError as exc:
            # The database closed under the walk: a snapshot install swapped
            # it, or the node stopped. The next start walks it again.
            logger.info("integrity walk ended early: %s", exc)
        else:
            logger.info(
                "integrity walk passed height=%d seconds=%.1f",
                height,
                time.monotonic() - started,
            )
        finally:
            self.done.set()


class _WalkStoppedError(Exception):
    """Raised through the walk to end it when the node stops."""
