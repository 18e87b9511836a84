"""Checkpoint cosignatures: signing, gossip, and finality.

Theory of operation. After applying block ``h`` every node signs checkpoint
``h`` with its node key and sends the signature to every other agency of the
trust list. Each node keeps the signatures that verify against the trust
list in force (the store checks them), so every node learns on its own when
a checkpoint is final: signed by a quorum of the trust list's node keys.

- A signature for a block not applied here yet is held back (at most
  ``MAX_ORPHANS``) and taken once the block is applied.
- The leader also hands every new signature to the batcher (``collect``),
  which carries it in the next batch, so signatures become part of the
  record and a node that replays the chain learns them too.
- A node does not cosign a checkpoint dated more than ``MAX_AHEAD_MS`` ahead
  of its own clock. The leader alone stamps each batch's time, and a
  verifier trusts a final checkpoint's time for freshness and expiry, so a
  time from the future must take a dishonest quorum, not one leader. (Later
  blocks, dated right, are cosigned and become final as usual.)
- Signatures travel once. A peer that was down, or is catching up, never
  gets them, and the tip's are carried in no later block while no write
  comes. So an idle node repeats the signatures it holds for its tip every
  ``REGOSSIP_S`` (one small frame per peer); relayed signatures are welcome,
  since each one is verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol

from ledger.block import Cosignature
from ledger.checkpoint import sign_checkpoint
from ledger.errors import CommitTimeoutError, StorageError, VerificationError
from ledger.keys import SigningKey
from ledger.store import LedgerStore
from node.frames import cosig_frame
from node.throttle import EveryMinute

logger = logging.getLogger(__name__)

MAX_ORPHANS: Final = 1024
REGOSSIP_S: Final = 2.0
MAX_PER_FRAME: Final = 64
MAX_AHEAD_MS: Final = 5 * 60 * 1000


class PeerLinks(Protocol):
    """What the cosigner needs of ``node.peers.Peers``."""

    agency: str
    key: SigningKey  # the node key that signs checkpoints

    def broadcast(self, frame: bytes) -> None: ...


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Cosigner:
    def __init__(
        self,
        *,
        store: LedgerStore,
        peers: PeerLinks,
        now_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.agency = peers.agency
        self._store = store
        self._peers = peers
        self._now_ms = now_ms
        self._ahead = EveryMinute()  # checkpoints not cosigned: too far ahead
        self._orphans: list[Cosignature] = []
        self._changed = asyncio.Event()
        self._last_activity = time.monotonic()
        # Called with every signature newly stored (the leader's batcher).
        self.collect: Callable[[Cosignature], None] | None = None
        # While a block is being applied in a worker thread, signatures wait
        # here: storing one would make the event loop wait for the store's
        # writer lock. ``flush`` stores them once the block is in.
        self.deferring = False
        self._deferred: list[Cosignature] = []

    def sign(self, height: int) -> None:
        """Block ``height`` was applied: sign it, tell the peers, and take the
        peers' signatures held back until it was."""
        self._last_activity = time.monotonic()
        own = self._own_signature(height)
        if own is not None:
            self._keep(own)
            self._peers.broadcast(cosig_frame((own,)))
        if self._orphans:
            early = [s for s in self._orphans if s.height <= height]
            self._orphans = [s for s in self._orphans if s.height > height]
            for item in early:
                self.take(item)

    def _own_signature(self, height: int) -> Cosignature | None:
        key = self._peers.key
        try:
            if self._store.trust.agency(self.agency).node_key != key.public_key:
                return None  # rotated to a key we do not hold (logged by Peers)
        except KeyError:
            return None  # not (or no longer) an agency of this chain
        cp = self._store.checkpoint(height)
        ahead = cp.time_ms - self._now_ms()
        if ahead > MAX_AHEAD_MS:
            # Every block, while a leader's clock runs fast: one line a minute.
            refused = self._ahead.count()
            if refused is not None:
                logger.warning(
                    "checkpoint not cosigned: dated ahead of this clock "
                    "agency=%s height=%d ahead_ms=%d refused=%d (is a clock off?)",
                    self.agency,
                    height,
                    ahead,
                    refused,
                )
            return None
        sig = sign_checkpoint(cp, self.agency, key)
        return Cosignature(height=height, agency=self.agency, signature=sig.signature)

    def take(self, sig: Cosignature) -> None:
        """A signature from a peer (its own, or relayed)."""
        if sig.height > self._store.height:
            if len(self._orphans) < MAX_ORPHANS:
                self._orphans.append(sig)
            return
        self._keep(sig)

    def flush(self) -> None:
        """Store the signatures deferred while a block was applied."""
        deferred, self._deferred = self._deferred, []
        for sig in deferred:
            self.take(sig)

    def _keep(self, sig: Cosignature) -> None:
        if self.deferring:
            if len(self._deferred) < MAX_ORPHANS:
                self._deferred.append(sig)
            return
        try:
            added = self._store.add_cosignatures(sig.height, [sig])
        except (VerificationError, StorageError) as exc:
            logger.debug(
                "cosignature refused agency=%s from=%s height=%d: %s",
                self.agency,
                sig.agency,
                sig.height,
                exc,
            )
            return
        if not added:
            return
        if self.collect is not None:
            self.collect(sig)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def tick(self) -> None:
        """Called every tick: repeat the tip's signatures while idle."""
        now = time.monotonic()
        if now - self._last_activity < REGOSSIP_S:
            return
        self._last_activity = now
        height = self._store.height
        if height == 0:
            return
        sigs = tuple(self._store.cosignatures(height)[:MAX_PER_FRAME])
        if sigs:
            self._peers.broadcast(cosig_frame(sigs))

    async def wait_final(self, height: int, timeout_s: float) -> None:
        """Wait until a final checkpoint covers ``height`` (CommitTimeoutError
        after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            final = self._store.latest_final()
            if final is not None and final[0].height >= height:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommitTimeoutError("no final checkpoint in time")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
