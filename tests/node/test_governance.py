"""Governance on a live cluster (issue #4, item 8).

A fourth agency joins a running 3-node cluster: its keys enter the trust
list through a quorum-approved ``add_agency`` entry, after which the leader
adds its node to Raft as a learner and promotes it to voter (membership
follows the applied trust list), and its signature appears on later final
checkpoints. Then a node key is rotated: the new key signs afterwards, and
a signature by the old one no longer counts.

A newcomer starts from the genesis, so once every node key has been rotated
it knows none of its peers' keys: ``catch_up_trust`` (the cluster's ``GET
/v1/trust`` answer) is what lets it in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger.codec import Value
from ledger.entries import Anchor, encode_entry
from ledger.errors import VerificationError
from ledger.keys import SigningKey, key_id
from ledger.note import parse_note, sign_note, verify_note
from ledger.submission import encode_submission, sign_submission
from ledger.trust import TrustList
from tests.node.harness import Cluster, now_ms, running_cluster

AGENCIES = ("police", "justice", "health")
ALL = (*AGENCIES, "land")


def _trust(cluster: Cluster, version: int) -> TrustList:
    """The trust list of ``version``, once every running node has it."""
    cluster.wait_until(
        f"trust list version {version}",
        lambda: all(
            cluster.cluster_info(a)["trust_version"] >= version for a in cluster.procs
        ),
    )
    body = cluster.get("police", "/v1/trust").json()
    return TrustList.from_json(body["trust_list"])


def _trust_on(cluster: Cluster, agencies: tuple[str, ...], version: int) -> TrustList:
    """The trust list of ``version``, once every node of ``agencies`` has it."""
    cluster.wait_until(
        f"trust list version {version}",
        lambda: all(
            cluster.cluster_info(a)["trust_version"] >= version for a in agencies
        ),
    )
    body = cluster.get(agencies[0], "/v1/trust").json()
    return TrustList.from_json(body["trust_list"])


def _final_note(cluster: Cluster, agency: str, height: int) -> str:
    """The node's final checkpoint once it covers ``height``."""
    found: list[str] = []

    def covered() -> bool:
        cp = cluster.checkpoint(agency)
        if cp is None or cp["height"] < height:
            return False
        found.append(cp["note"])
        return True

    cluster.wait_until(f"{agency} final at {height}", covered)
    return found[-1]


def _write_final(cluster: Cluster, agency: str, doc_type: str) -> int:
    raw, _ = cluster.anchors(agency, 1, doc_type=doc_type)
    resp = cluster.post_submission(agency, raw, wait="final")
    assert resp.status_code == 200, resp.text
    height: int = resp.json()["height"]
    return height


def _voter(cluster: Cluster, agency: str) -> bool:
    members = cluster.cluster_info(cluster.wait_leader())["members"]
    return any(m["id"] == agency and m["voter"] for m in members)


def test_agency_joins_and_node_key_rotates(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", AGENCIES, spare=1) as c:
        # (1): the newcomer's node runs, waiting: no agency trusts it yet.
        land = c.add_agency_files("land")
        c.start("land")
        c.wait_healthy("land")
        assert c.cluster_info("land")["height"] == 0

        # (2): a quorum of admins approves; the trust list gains it.
        raw = c.governance("add_agency", {"agency": land.to_value()}, version=2)
        resp = c.post_submission(c.wait_leader(AGENCIES), raw)
        assert resp.status_code == 200, resp.text
        assert _trust(c, 2).agency("land").node_key == land.node_key

        # (3): Raft follows: learner, caught up, then voter.
        c.wait_until("land to vote", lambda: _voter(c, "land"))
        leader_log = c.log(c.wait_leader())
        assert "change=add_learner:land" in leader_log
        assert "change=add_voter:land" in leader_log
        c.wait_converged(ALL)

        # (4): it anchors its own documents and cosigns final checkpoints.
        height = _write_final(c, "land", "land_use")
        trust = _trust(c, 2)
        assert trust.quorum == 3
        for agency in ALL:
            verify_note(_final_note(c, agency, height), trust.note_verifiers(), 3)

        def signed_by(agency: str, key: bytes) -> bool:
            # NB: the agency's own node: elsewhere a note is fixed once a
            # quorum signed it, and the newest member's is often the last.
            note = parse_note(_final_note(c, agency, height))
            kid = key_id(agency, key)
            return any(s.name == agency and s.key_id == kid for s in note.signatures)

        c.wait_until("land's signature", lambda: signed_by("land", land.node_key))

        # (5): health's node key is rotated: the operator puts the new key
        # beside the old one, then the agencies approve the change.
        new = SigningKey.generate()
        new.save(c.dir / "health" / "node.key.next")
        c.edit_config("health", lambda cfg: cfg.update(next_node_key="node.key.next"))
        params: dict[str, Value] = {"id": "health", "node_key": new.public_key}
        raw = c.governance("rotate_node_key", params, version=3)
        assert c.post_submission(c.wait_leader(), raw).status_code == 200
        assert _trust(c, 3).agency("health").node_key == new.public_key

        # (6): the new key signs later checkpoints...
        c.wait_leader(ALL)
        height = _write_final(c, "justice", "birth_registration")
        c.wait_until(
            "health's new key on a final checkpoint",
            lambda: signed_by("health", new.public_key),
        )
        assert "node key switched agency=health" in c.log("health")

        # (7): ...while a signature by the old key counts for nothing, and
        # no node's final checkpoint carries one.
        old = SigningKey.load(c.dir / "health" / "node.key")
        body = parse_note(_final_note(c, "police", height)).text
        by_old = sign_note(body, "health", old)
        with pytest.raises(VerificationError):
            verify_note(by_old, _trust(c, 3).note_verifiers(), 1)
        old_kid = key_id("health", old.public_key)
        for agency in ALL:
            note = parse_note(_final_note(c, agency, height))
            assert all(s.key_id != old_kid for s in note.signatures), agency

        # (8): justice's issuer key is rotated: the live cluster refuses a
        # submission signed by the retired key and takes one by the new key.
        retired = c.issuer_key("justice")
        fresh = SigningKey.generate()
        params = {
            "id": "justice",
            "issuer_key": fresh.public_key,
            "retire": retired.public_key,
        }
        raw = c.governance("rotate_issuer_key", params, version=4)
        assert c.post_submission(c.wait_leader(), raw).status_code == 200
        assert _trust(c, 4).agency("justice").issuer_keys == (fresh.public_key,)
        refused = c.post_submission(c.wait_leader(), _anchor(c, retired))
        assert refused.status_code == 422, refused.text
        assert refused.json()["reason"] == "unknown_key"
        taken = c.post_submission(c.wait_leader(), _anchor(c, fresh))
        assert taken.status_code == 200, taken.text
        c.wait_converged(ALL)

        # (9): the newcomer leaves: out of the trust list, then out of Raft;
        # the three others go on writing and finalising without it.
        raw = c.governance("remove_agency", {"id": "land"}, version=5)
        assert c.post_submission(c.wait_leader(AGENCIES), raw).status_code == 200
        trust = _trust_on(c, AGENCIES, 5)
        assert [a.id for a in trust.agencies] == list(AGENCIES)

        def members() -> set[str]:
            info = c.cluster_info(c.wait_leader(AGENCIES))
            return {m["id"] for m in info["members"]}

        c.wait_until("land to leave Raft", lambda: members() == set(AGENCIES))
        # The node that left says so to its operator's health check.
        c.wait_until(
            "land's health check to say it was removed",
            lambda: c.get("land", "/healthz").status_code == 503,
        )
        assert "was removed from the trust list" in c.get("land", "/healthz").text
        height = _write_final(c, "police", "criminal_record")
        for agency in AGENCIES:
            verify_note(
                _final_note(c, agency, height), trust.note_verifiers(), trust.quorum
            )
        c.wait_converged(AGENCIES)


def _rotate_node_key(cluster: Cluster, agency: str, version: int) -> None:
    """Rotate ``agency``'s node key as an operator does; wait until it signs
    with the new one."""
    new = SigningKey.generate()
    new.save(cluster.dir / agency / "node.key.next")
    cluster.edit_config(agency, lambda cfg: cfg.update(next_node_key="node.key.next"))
    params: dict[str, Value] = {"id": agency, "node_key": new.public_key}
    raw = cluster.governance("rotate_node_key", params, version=version)
    assert cluster.post_submission(cluster.wait_leader(), raw).status_code == 200
    assert _trust(cluster, version).agency(agency).node_key == new.public_key
    cluster.wait_until(
        f"{agency} to switch keys",
        lambda: f"transport restarted agency={agency}" in cluster.log(agency),
    )


def test_newcomer_joins_after_every_node_key_was_rotated(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "c", AGENCIES, spare=1) as c:
        # (1): no node presents the key the genesis lists for it any more.
        for version, agency in enumerate(AGENCIES, start=2):
            _rotate_node_key(c, agency, version)
        c.wait_leader(AGENCIES)

        # (2): the newcomer is handed the trust list in force, as served.
        land = c.add_agency_files("land")
        served = c.get("police", "/v1/trust")
        (c.dir / "land" / "trust.json").write_bytes(served.content)
        c.edit_config("land", lambda cfg: cfg.update(catch_up_trust="trust.json"))
        c.start("land")
        c.wait_healthy("land")
        raw = c.governance("add_agency", {"agency": land.to_value()}, version=5)
        resp = c.post_submission(c.wait_leader(AGENCIES), raw)
        assert resp.status_code == 200, resp.text

        # (3): it catches up from its rotated peers, votes and cosigns.
        c.wait_until("land to vote", lambda: _voter(c, "land"))
        c.wait_converged(ALL)
        assert "catch_up_trust no longer needed agency=land" in c.log("land")
        height = _write_final(c, "land", "land_use")
        trust = _trust(c, 5)
        for agency in ALL:
            verify_note(_final_note(c, agency, height), trust.note_verifiers(), 3)


def _anchor(cluster: Cluster, key: SigningKey) -> bytes:
    """One new justice anchor signed by ``key``."""
    entry = Anchor(
        issuer="justice",
        doc_id=os.urandom(32),
        doc_type="birth_registration",
        issued_at=now_ms(),
    )
    sub = sign_submission(cluster.trust.origin, "justice", [encode_entry(entry)], key)
    return encode_submission(sub)
