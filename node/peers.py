"""The node's links to its peers: whom it dials, and with which key.

Theory of operation. The trust list decides who is a peer and which key
each one must present (``PeerTransport`` pins every connection to
``peer_keys()``); node.toml says where each peer is reached. A configured
peer is dialled only while the trust list holds it. When the applied trust
list changes (``trust_changed``):

1. an agency added to the trust list without a ``[[peers]]`` entry makes
   the node read node.toml again (the operator adds the entry to every
   node before the governance change is submitted; no restart needed);
2. if our own node key was rotated, the node switches to the held key the
   trust list now names (``next_node_key``, read again from node.toml if
   need be) for signing at once, and for TLS by restarting the transport
   ``REKEY_DELAY_S`` later (``settle``, called by the driver between
   rounds). Not at once: a peer that has not applied the rotation yet
   still pins the old key and would refuse every new connection, and if
   we lead, it could never learn of the rotation (from nobody else);
3. connections pinned to a rotated peer's old key are left up for
   ``REKEY_GRACE_S``: the peer may not yet have applied its own rotation,
   and must hear of it over them. After that they are re-checked.

A node that has heard no leader for long while holding a second key tries
the other one for TLS: perhaps its key was rotated while it was away, and
its peers now refuse the old one. Both keys are its own; signing always
follows the applied trust list.

A node behind the cluster's trust list (a newcomer, or a wiped node, which
start from the genesis) would refuse every peer added after the genesis or
whose node key was rotated since, and so could never catch up from them.
``catch_up_trust`` in node.toml names a later list (a saved ``GET
/v1/trust`` answer of this chain, vouched for by the operator as the
genesis is). While the applied list is older than it ("behind"):

* its agencies and node keys, and only those, are the peers: an agency it
  no longer lists, or a key it no longer names, is refused as the cluster
  refuses it;
* the node presents over TLS the key it names for our agency, if we hold
  it (our own key may have been rotated since the applied list). Signing
  still follows the applied list: ``node.cosign`` signs nothing with a key
  that list does not name.

Once the applied list reaches its version the file plays no part. Blocks
are re-applied with the rules all along, governance approvals included, so
the applied list the node ends with owes nothing to the file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Final

from consensus.transport import OnFrame, PeerTransport
from ledger.errors import ConfigError
from ledger.keys import SigningKey
from ledger.store import LedgerStore
from ledger.trust import TrustList
from node.config import NodeConfig, load_config

logger = logging.getLogger(__name__)

REKEY_GRACE_S: Final = 30.0
# Our TLS key changes this long after our rotation applied: peers that
# applied it too keep the old key's connections for REKEY_GRACE_S, longer.
REKEY_DELAY_S: Final = 3.0
# Without a leader for this many election timeouts, try the other key.
LEADERLESS_ELECTIONS: Final = 10


class Peers:
    """The transport, the peers it dials and the node's keys."""

    def __init__(
        self, config: NodeConfig, store: LedgerStore, on_frame: OnFrame
    ) -> None:
        self.config = config
        self.agency = config.agency
        self._store = store
        self._on_frame = on_frame
        self._keys = load_keys(config)
        # The later trust list while behind it, else None.
        self._later: TrustList | None = None
        if config.catch_up_trust is not None:
            later = load_catch_up_trust(config.catch_up_trust, store)
            if store.trust.version < later.version:
                self._later = later
        self.key = self._first_key(store.trust)  # signs checkpoints
        self._tls = self._later_key() or self.key  # presented to peers
        self._rekey: SigningKey | None = None  # TLS identity to switch to
        self._rekey_at = 0.0  # ... from this monotonic time on
        self._dialling = self._dial_peers()
        self._stopping = False
        self._leaderless_since = time.monotonic()
        self.transport = self._new_transport(self._tls)

    # -- keys ----------------------------------------------------------------

    def pick_key(self, trust: TrustList) -> SigningKey:
        """The held key that ``trust`` names as ours.

        A node waiting to join (``join = true``) uses its ``node_key``.
        Raises ConfigError if we hold no such key.
        """
        try:
            want = trust.agency(self.agency).node_key
        except KeyError:
            if not self.config.join:
                raise ConfigError(
                    f"agency {self.agency!r} is not in the trust list (set "
                    "join = true for a node waiting to be added)"
                ) from None
            return self._keys[0]
        for key in self._keys:
            if key.public_key == want:
                return key
        raise ConfigError(
            f"{self.config.node_key}: not {self.agency}'s node key in the trust "
            f"list version {trust.version} (nor is next_node_key)"
        )

    def _first_key(self, trust: TrustList) -> SigningKey:
        """``pick_key(trust)``; while behind, the later list's key for us if
        we hold no key ``trust`` names (ours was rotated since)."""
        try:
            return self.pick_key(trust)
        except ConfigError:
            later = self._later_key()
            if later is None:
                raise
            logger.info(
                "own node key is the catch_up_trust one agency=%s key=%s",
                self.agency,
                later.public_key.hex()[:16],
            )
            return later

    def _later_key(self) -> SigningKey | None:
        """While behind: the held key the later list names as ours."""
        if self._later is None:
            return None
        try:
            want = self._later.agency(self.agency).node_key
        except KeyError:
            return None  # a newcomer, not in it yet
        return next((k for k in self._keys if k.public_key == want), None)

    def _rekey_to(self, trust: TrustList) -> None:
        try:
            key = self.pick_key(trust)
        except ConfigError:
            try:
                if self.config.path is not None:
                    self._keys = load_keys(load_config(self.config.path))
                key = self.pick_key(trust)
            except ConfigError as exc:
                logger.error("cannot sign checkpoints agency=%s: %s", self.agency, exc)
                return
        if key.public_key != self.key.public_key:
            logger.info(
                "node key switched agency=%s key=%s",
                self.agency,
                key.public_key.hex()[:16],
            )
            self.key = key
            self._rekey = key
            self._rekey_at = time.monotonic() + REKEY_DELAY_S

    # -- the transport -------------------------------------------------------

    def _new_transport(self, key: SigningKey) -> PeerTransport:
        return PeerTransport(
            node_id=self.agency,
            listen_host=self.config.raft_host,
            listen_port=self.config.raft_port,
            key=key,
            peers=self._dialling,
            peer_keys=self.peer_keys,
            on_frame=self._on_frame,
        )

    @property
    def dialled(self) -> frozenset[str]:
        """The agencies this node dials now."""
        return frozenset(self._dialling)

    @property
    def tls_key(self) -> SigningKey:
        """The key presented to peers (``key`` signs checkpoints)."""
        return self._tls

    def peer_keys(self) -> dict[str, bytes]:
        """Agency id -> the node key it must present (module docstring)."""
        trust = self._store.trust if self._later is None else self._later
        return {a.id: a.node_key for a in trust.agencies}

    def _dial_peers(self) -> dict[str, tuple[str, int]]:
        trusted = self.peer_keys()
        return {
            p.id: (p.raft_host, p.raft_port)
            for p in self.config.peers
            if p.id in trusted
        }

    async def start(self) -> None:
        await self.transport.start()

    async def stop(self) -> None:
        self._stopping = True
        await self.transport.stop()

    def send(self, peer: str, frame: bytes) -> None:
        self.transport.send(peer, frame)

    def broadcast(self, frame: bytes) -> None:
        """To every other agency of the trust list."""
        for agency in self._store.trust.agencies:
            if agency.id != self.agency:
                self.transport.send(agency.id, frame)

    def api_url(self, agency: str) -> str | None:
        if agency == self.agency:
            return self.config.public_url
        try:
            return self.config.peer(agency).api_url
        except KeyError:
            return None

    def api_urls(self) -> list[str]:
        return [p.api_url for p in self.config.peers]

    async def settle(self) -> None:
        """Restart the transport once our TLS identity must change (a
        rotation of our key: ``REKEY_DELAY_S`` after it applied)."""
        if self._rekey is None or time.monotonic() < self._rekey_at:
            return
        key, self._rekey = self._rekey, None
        if self._stopping:
            return
        await self.transport.stop()
        self._tls = key
        self.transport = self._new_transport(key)
        await self.transport.start()
        logger.info(
            "transport restarted agency=%s key=%s",
            self.agency,
            key.public_key.hex()[:16],
        )

    def leader_known(self, known: bool, election_s: float) -> None:
        """Called every tick; see the module docstring."""
        now = time.monotonic()
        if known:
            self._leaderless_since = now
            return
        if now - self._leaderless_since < LEADERLESS_ELECTIONS * election_s:
            return
        self._leaderless_since = now
        others = [k for k in self._keys if k.public_key != self._tls.public_key]
        if others:
            logger.info("trying the other node key agency=%s", self.agency)
            self._rekey, self._rekey_at = others[0], now

    # -- the trust list changed ----------------------------------------------

    def trust_changed(self, old: TrustList, new: TrustList) -> None:
        before = {a.id: a.node_key for a in old.agencies}
        after = {a.id: a.node_key for a in new.agencies}
        added = sorted(set(after) - set(before))
        rotated = sorted(a for a in after if a in before and after[a] != before[a])
        logger.info(
            "trust list changed agency=%s version=%d added=%s removed=%s rotated=%s",
            self.agency,
            new.version,
            ",".join(added),
            ",".join(sorted(set(before) - set(after))),
            ",".join(rotated),
        )
        caught_up = self._later is not None and new.version >= self._later.version
        if caught_up:
            logger.info(
                "catch_up_trust no longer needed agency=%s version=%d",
                self.agency,
                new.version,
            )
            self._later = None
        # (1): addresses of new agencies.
        missing = [a for a in added if a != self.agency and not self._has_peer(a)]
        if missing:
            self._reload_peers(missing)
        # (2): our own key.
        if self.agency in rotated or (self.agency in added and self.config.join):
            self._rekey_to(new)
        # (3): dial new peers, drop removed ones; old keys after a grace.
        peers = self._dial_peers()
        if peers != self._dialling:
            self._dialling = peers
            self.transport.update_peers(peers)
        if rotated or caught_up:
            asyncio.get_running_loop().call_later(REKEY_GRACE_S, self._revalidate)

    def _revalidate(self) -> None:
        if not self._stopping:
            self.transport.revalidate()

    def _has_peer(self, agency: str) -> bool:
        return any(p.id == agency for p in self.config.peers)

    def _reload_peers(self, missing: list[str]) -> None:
        path = self.config.path
        if path is None:
            logger.warning(
                "no address for new agencies agency=%s missing=%s",
                self.agency,
                ",".join(missing),
            )
            return
        try:
            fresh = load_config(path)
        except ConfigError as exc:
            logger.error("cannot re-read peers agency=%s: %s", self.agency, exc)
            return
        self.config = replace(self.config, peers=fresh.peers)
        logger.info(
            "peers re-read agency=%s path=%s peers=%s missing=%s",
            self.agency,
            path,
            ",".join(p.id for p in fresh.peers),
            ",".join(a for a in missing if not self._has_peer(a)),
        )


def load_catch_up_trust(path: Path, store: LedgerStore) -> TrustList:
    """The trust list in ``path``, a saved ``GET /v1/trust`` answer of
    ``store``'s chain.

    Only that form: it names its chain (``chain_id``, the genesis's hash),
    so a list of another cluster with the same origin is refused; a bare
    trust list names none. Raises ConfigError naming the file: unreadable,
    not such an answer, of another chain or origin, or older than the
    genesis.
    """
    where = f"catch_up_trust {path}"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ConfigError(f"cannot read {where}: {exc}") from None
    if not isinstance(obj, dict) or not {"chain_id", "trust_list"} <= obj.keys():
        raise ConfigError(
            f"{where}: not a GET /v1/trust answer (no chain_id and trust_list)"
        )
    chain = obj["chain_id"]
    if chain != store.chain_id.hex():
        raise ConfigError(f"{where}: chain_id {chain} is not this chain's")
    try:
        later = TrustList.from_json(obj["trust_list"])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    genesis = store.genesis
    if later.origin != genesis.origin:
        raise ConfigError(f"{where}: origin {later.origin!r} is not {genesis.origin!r}")
    if later.version < genesis.version:
        raise ConfigError(
            f"{where}: version {later.version} is older than the genesis "
            f"({genesis.version})"
        )
    return later


def load_keys(config: NodeConfig) -> list[SigningKey]:
    """``node_key``, and ``next_node_key`` if configured and present."""
    keys = [SigningKey.load(config.node_key)]
    if config.next_node_key is not None and config.next_node_key.exists():
        keys.append(SigningKey.load(config.next_node_key))
    return keys
