"""Anchors per second the peer transport carries inside Raft messages.

Two ``PeerTransport`` instances on loopback, with real TLS 1.3 and key
pinning, as between two nodes. The sender sends Raft append messages, each
carrying one Raft entry that holds a whole batch (one signed submission of
``batch_size`` anchors, as the leader proposes it); the receiver decodes
every frame as the node does (``node.frames.decode_frame``). The figure is
anchors delivered and decoded per second: if it were near
``batched_anchors_per_s``, the link would be what limits the cluster.

The transport drops the oldest frames when a peer's queue is full, so the
sender keeps at most ``WINDOW`` frames unacknowledged by the receiver,
which only counts; nothing is lost.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Final

from bench.figures import Figure, Results, missing
from bench.leaves import LeafMaker
from bench.profile import Profile
from consensus.messages import Entry, Message, MessageType
from consensus.transport import PeerTransport
from ledger.keys import SigningKey
from ledger.rules import BatchInput
from ledger.submission import encode_submission, sign_submission
from node.frames import decode_frame, raft_frame

NAME: Final = "raft_transport_entries_per_s"
WINDOW: Final = 16
IDS: Final = ("bench-tx", "bench-rx")


def not_run(why: str) -> Figure:
    return missing(NAME, "entries/s", why)


def run(profile: Profile, ceilings: Results) -> Figure:
    return asyncio.run(_measure(profile))


def _frame(batch_size: int, index: int) -> bytes:
    key = SigningKey.generate()
    leaves = LeafMaker(issuer=IDS[0]).leaves(batch_size)
    sub = sign_submission("bench/origin", IDS[0], leaves, key)
    data = BatchInput(time_ms=0, submissions=(encode_submission(sub),)).encode()
    msg = Message(
        MessageType.APP,
        IDS[0],
        IDS[1],
        term=1,
        log_term=1,
        index=index,
        entries=(Entry(1, index + 1, data=data),),
        commit=index,
    )
    return raft_frame(msg)


async def _measure(profile: Profile) -> Figure:
    keys = {i: SigningKey.generate() for i in IDS}
    pins = {i: k.public_key for i, k in keys.items()}
    received = [0]
    arrived = asyncio.Event()

    def on_frame(peer: str, frame: bytes) -> None:
        # What the node does with a frame on arrival; the batch inside is
        # decoded later, when the entry is applied.
        item = decode_frame(frame)
        if not isinstance(item, Message) or not item.entries:
            raise RuntimeError("the transport delivered something else")
        received[0] += 1
        arrived.set()

    def transport(node: str) -> PeerTransport:
        return PeerTransport(
            node_id=node,
            listen_host="127.0.0.1",
            listen_port=0,
            key=keys[node],
            peers={},
            peer_keys=lambda: pins,
            on_frame=on_frame,
            rng=random.Random(1),
        )

    tx, rx = transport(IDS[0]), transport(IDS[1])
    await tx.start()
    await rx.start()
    try:
        tx.update_peers({IDS[1]: ("127.0.0.1", rx.port)})
        frame = _frame(profile.batch_size, 1)
        tx.send(IDS[1], frame)
        await asyncio.wait_for(arrived.wait(), 30)  # connected and warm
        received[0] = 0
        sent = 0
        start = time.perf_counter()
        while time.perf_counter() - start < profile.transport_seconds:
            while sent - received[0] < WINDOW:
                tx.send(IDS[1], frame)
                sent += 1
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 30)
        while received[0] < sent:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 30)
        elapsed = time.perf_counter() - start
    finally:
        await tx.stop()
        await rx.stop()
    rate = received[0] * profile.batch_size / elapsed
    return Figure(
        name=NAME,
        value=rate,
        unit="entries/s",
        note=(
            f"{received[0]:,} Raft append frames of {len(frame):,} bytes (one "
            f"entry = a {profile.batch_size:,}-anchor batch) over TLS on "
            f"loopback, decoded as the node does: "
            f"{received[0] / elapsed:,.0f} Raft entries/s"
        ),
    )
