"""Named failure scenarios from the Raft paper, the thesis and known bugs.

Each test drives a small cluster message by message (``tests.consensus.
cluster``) into the situation the name describes, and checks that the core
refuses to do the unsafe thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from consensus.messages import (
    ConfChange,
    ConfChangeKind,
    Entry,
    HardState,
    Message,
    MessageType,
    Role,
    Snapshot,
)
from consensus.storage import MemoryStorage, SnapshotOutOfDateError
from ledger.errors import ConsensusError, NotLeaderError
from tests.consensus.cluster import VOTES, Cluster

MT = MessageType


def to(dst: str, *types: MT) -> Callable[[Message], bool]:
    return lambda m: m.dst == dst and (not types or m.type in types)


def test_figure8_leader_never_commits_older_term_entry_by_counting() -> None:
    """Raft §5.4.2, Figure 8: an old-term entry on a majority is not committed."""
    c = Cluster(["s1", "s2", "s3", "s4", "s5"], max_msg_bytes=1)
    c.elect("s1", "s2", "s3", "s4", "s5")
    c.settle("s1", "s2", "s3", "s4", "s5")
    # (a) s1 appends x at index 2 and crashes before it reaches anyone.
    assert c.propose("s1", b"x") == 2
    c.crash("s1")
    # (b) s5 wins with s3, s4 and writes its no-op at index 2; it reaches nobody.
    c.elect("s5", "s3", "s4")
    assert c.raft("s5").log.term(2) == c.raft("s5").term
    c.crash("s5")
    # (c) s1 returns, wins with s2, s3, s4 and copies x to s2 and s3: x is
    # now on a majority (s1, s2, s3) but is of an older term.
    c.restart("s1")
    c.elect("s1", "s2", "s3", "s4")
    s1 = c.raft("s1")
    trio = c.among("s1", "s2", "s3")
    for _ in range(6):
        # The network loses every append that would give a follower s1's
        # no-op (probes that they reject still arrive).
        c.take(
            lambda m: (
                m.type is MT.APP
                and any(e.index >= 3 for e in m.entries)
                and c.nodes[m.dst].storage.last_index() >= 2
            )
        )
        c.deliver(trio, rounds=1)
    assert s1.prs["s2"].match == s1.prs["s3"].match == 2
    assert c.raft("s3").log.term(2) == s1.log.term(2) < s1.term
    assert s1.log.committed == 1, "committed an older-term entry by counting"
    c.crash("s1")
    # (d) s5 returns and wins with s2, s3, s4; it overwrites x everywhere.
    c.restart("s5")
    c.elect("s5", "s2", "s3", "s4")
    c.settle("s2", "s3", "s4", "s5")
    for nid in ("s2", "s3", "s4", "s5"):
        assert all(e.data != b"x" for e in c.nodes[nid].applied)
        assert c.raft(nid).log.committed >= 3


def test_vote_survives_crash_so_no_two_leaders_in_one_term() -> None:
    """Raft §5.2: a vote is durable before it is granted."""
    c = Cluster(["n1", "n2", "n3"], pre_vote=False)
    for nid in ("n1", "n3"):
        r = c.raft(nid)
        c.tick(nid, r.randomized_election_timeout)
        assert r.role is Role.CANDIDATE
    term = c.raft("n1").term
    assert c.raft("n3").term == term
    c.deliver(lambda m: m.src == "n1" and m.dst == "n2")
    grant = c.take(lambda m: m.src == "n2")
    assert [m.reject for m in grant] == [False]
    assert c.nodes["n2"].storage.hard_state.vote == "n1"
    c.crash("n2")
    c.restart("n2")
    c.deliver(lambda m: m.src == "n3" and m.dst == "n2")
    answer = c.take(lambda m: m.src == "n2")
    assert [m.reject for m in answer] == [True]
    for m in grant:
        c.step(m)
    c.deliver(lambda m: m.type is MT.VOTE_RESP)
    assert c.leaders() == ["n1"]


def test_term_is_durable_so_a_stale_leader_cannot_truncate_committed() -> None:
    """Raft Figure 2: currentTerm is persistent state."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n3", "n1", "n2")
    c.settle("n1", "n2", "n3")
    c.propose("n3", b"old")  # index 2, term 1; reaches nobody yet
    stale = c.take(to("n2", MT.APP))
    c.elect("n1", "n2")
    c.settle("n1", "n2")
    assert c.committed("n1") == 2 and c.raft("n2").log.term(2) == c.raft("n1").term
    c.crash("n2")
    c.restart("n2")
    assert c.raft("n2").term == c.raft("n1").term
    for m in stale:
        c.step(m)
    assert c.raft("n2").log.term(2) == c.raft("n1").term, "committed entry lost"
    # The stale leader learns the new term from the answer and steps down.
    c.deliver(lambda m: m.dst == "n3")
    assert c.raft("n3").role is Role.FOLLOWER


def test_follower_ignores_delayed_shorter_duplicate_append() -> None:
    """Raft §5.3: truncate only at an actual conflict, never on a stale append."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    c.propose("n1", b"a")
    early = [m for m in c.outbox if m.dst == "n2" and m.entries]
    c.settle("n1", "n2", "n3")
    c.propose("n1", b"b")
    c.settle("n1", "n2", "n3")
    n2 = c.raft("n2")
    last = n2.log.last_index()
    assert early and early[0].entries[-1].index < last
    c.step(early[0])  # the network delivers it again, late
    assert n2.log.last_index() == last
    ack = c.take(lambda m: m.src == "n2")
    assert [(m.reject, m.index) for m in ack] == [(False, n2.log.committed)]


def test_follower_commit_is_bounded_by_what_the_append_verified() -> None:
    """Raft Figure 2: commitIndex = min(leaderCommit, index of last new entry)."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    # n2 holds two entries of an old leader that never committed.
    n2 = c.raft("n2")
    term = n2.term
    n2.log.append([Entry(term, 2, data=b"stale"), Entry(term, 3, data=b"stale")])
    c.handle("n2")
    # A new leader (higher term) with a different index 2..3, commit 3, checks
    # only index 1 in this append.
    probe = Message(MT.APP, "n3", "n2", term + 1, log_term=term, index=1, commit=3)
    c.step(probe)
    assert n2.log.committed == 1
    # And a heartbeat carries at most what the follower is known to hold.
    c.elect("n1", "n2", "n3")
    c.tick("n1")
    beats = [m for m in c.outbox if m.type is MT.HEARTBEAT]
    assert beats and all(m.commit <= c.raft("n1").prs[m.dst].match for m in beats)


@pytest.mark.parametrize("agree", [False, True])
def test_snapshot_with_disagreeing_last_term_replaces_the_log(agree: bool) -> None:
    """Raft §7: keep the suffix only if the snapshot's last entry matches ours."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    n2 = c.raft("n2")
    term = n2.term
    n2.log.append([Entry(term, i, data=b"s") for i in (2, 3, 4)])
    c.handle("n2")
    snap_term = term if agree else term + 1
    snap = Snapshot(3, snap_term, c.genesis, b"image")
    c.step(Message(MT.SNAPSHOT, "n3", "n2", term + 1, snapshot=snap))
    assert n2.log.committed == 3
    if agree:
        assert n2.log.last_index() == 4  # suffix kept, nothing wiped
        assert c.nodes["n2"].storage.snapshot().index == 0
    else:
        assert n2.log.last_index() == 3 and n2.log.term(3) == snap_term
        assert c.nodes["n2"].storage.snapshot() == snap
        assert c.nodes["n2"].storage.last_index() == 3


def _leader_with_snapshots(c: Cluster) -> tuple[Snapshot, Snapshot]:
    c.elect("n1", "n2")
    c.settle("n1", "n2")
    st = c.nodes["n1"].storage
    snaps = []
    for batch in (3, 3):
        for i in range(batch):
            c.propose("n1", b"%d" % i)
        c.settle("n1", "n2")
        applied = c.raft("n1").log.applied
        snaps.append(st.create_snapshot(applied, c.genesis, b"%d" % applied))
        st.compact(applied)
    return snaps[0], snaps[1]


def test_two_snapshots_in_a_row_racing_compaction() -> None:
    """A newer snapshot wins; a delayed older one never rolls a follower back."""
    c = Cluster(["n1", "n2", "n3"])
    old, new = _leader_with_snapshots(c)
    term = c.raft("n1").term
    # Both arrive before n3's driver handles a Ready: one Ready, the newest.
    n3 = c.raft("n3")
    n3.step(Message(MT.SNAPSHOT, "n1", "n3", term, snapshot=old))
    n3.step(Message(MT.SNAPSHOT, "n1", "n3", term, snapshot=new))
    c.handle("n3")
    rd = c.nodes["n3"].readies[-1]
    assert rd.snapshot == new and c.nodes["n3"].storage.snapshot() == new
    # The older one, delayed, is refused: commit and storage stay.
    c.step(Message(MT.SNAPSHOT, "n1", "n3", term, snapshot=old))
    assert n3.log.committed == new.index
    assert c.nodes["n3"].storage.snapshot() == new
    # The driver cannot compact back below what was installed.
    with pytest.raises(SnapshotOutOfDateError):
        c.nodes["n3"].storage.create_snapshot(old.index, c.genesis, b"")
    c.settle("n1", "n2", "n3")
    assert n3.log.committed == c.committed("n1")


@pytest.mark.parametrize("pre_vote", [True, False])
def test_removed_server_cannot_disrupt_the_cluster(pre_vote: bool) -> None:
    """Thesis §4.2.3: a server that missed its removal must not depose anyone."""
    c = Cluster(["n1", "n2", "n3", "n4"], pre_vote=int(pre_vote))
    c.elect("n1", "n2", "n3", "n4")
    c.settle("n1", "n2", "n3", "n4")
    c.change("n1", ConfChange(ConfChangeKind.REMOVE, "n4"))
    c.take(to("n4"))
    c.settle("n1", "n2", "n3")
    assert "n4" not in c.raft("n1").conf_state().voters
    term = c.raft("n1").term
    campaign = MT.PRE_VOTE if pre_vote else MT.VOTE
    asked = 0
    for _ in range(10 * 20):  # ten election timeouts, everyone connected
        for nid in ("n1", "n2", "n3", "n4"):
            c.tick(nid)
        asked += sum(m.src == "n4" and m.type is campaign for m in c.outbox)
        c.settle("n1", "n2", "n3", "n4")
    # n4 never learned of its removal and kept campaigning, in vain.
    assert asked > 0 and "n4" in c.raft("n4").conf_state().voters
    assert pre_vote or c.raft("n4").term > term
    assert c.leaders() == ["n1"] and c.raft("n1").term == term
    assert c.raft("n2").term == term


def test_prevote_with_check_quorum_elects_after_leader_is_isolated() -> None:
    """Pre-vote plus leader leases must still elect once the leader is gone."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    ticks = 0
    while c.raft("n1").role is Role.LEADER or not ({"n2", "n3"} & set(c.leaders())):
        for nid in ("n1", "n2", "n3"):
            c.tick(nid)
        c.take(lambda m: "n1" in (m.src, m.dst))  # n1 is isolated
        c.settle("n2", "n3")
        ticks += 1
        assert ticks <= 10 * 20, "no leader within 10 election timeouts"
    new = ({"n2", "n3"} & set(c.leaders())).pop()
    c.settle("n1", "n2", "n3")  # heal: the old leader follows
    for _ in range(3):
        c.tick(new)
        c.settle("n1", "n2", "n3")
    assert c.raft("n1").lead == new and c.raft("n1").role is Role.FOLLOWER


def test_entries_are_acknowledged_only_after_they_are_synced() -> None:
    """The Ready contract: an APP_RESP leaves only with the entries it acks."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    c.propose("n1", b"w")
    c.take(to("n3"))
    for m in c.take(to("n2", MT.APP)):
        c.raft("n2").step(m)
    c.handle("n2", persist=False)  # the driver crashes before syncing
    rd = c.nodes["n2"].readies[-1]
    acks = [m for m in rd.messages if m.type is MT.APP_RESP and not m.reject]
    assert acks and rd.entries and acks[0].index == rd.entries[-1].index
    assert c.outbox == [] or all(m.src != "n2" for m in c.outbox)
    c.restart("n2")
    assert c.raft("n2").log.last_index() < acks[0].index
    c.settle("n1", "n2")  # nothing reaches n1 from the lost Ready
    assert c.committed("n1") < acks[0].index
    c.tick("n1")  # the heartbeat round finds n2 behind and resends
    c.settle("n1", "n2")
    assert c.nodes["n2"].storage.last_index() >= acks[0].index
    assert c.committed("n1") == acks[0].index  # committed only once synced


def test_isolated_old_leader_serves_no_stale_read() -> None:
    """Thesis §6.4: ReadIndex needs a heartbeat round from a quorum."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    c.elect("n2", "n3")  # n1 is cut off and does not know yet
    c.settle("n2", "n3")
    c.propose("n2", b"w")
    c.settle("n2", "n3")
    w = c.committed("n2")
    old = c.raft("n1")
    assert c.leaders() == ["n1", "n2"]
    c.read("n1", b"r1")
    c.settle("n1", "n2", "n3")  # the partition heals: answers carry the new term
    assert old.role is Role.FOLLOWER
    served = [rs for rd in c.nodes["n1"].readies for rs in rd.read_states]
    assert all(rs.index >= w for rs in served)
    # The new leader answers once a quorum confirmed it, at or after w.
    c.read("n2", b"r2")
    c.settle("n1", "n2", "n3")
    states = [rs for rd in c.nodes["n2"].readies for rs in rd.read_states]
    assert [(rs.context, rs.index >= w) for rs in states] == [(b"r2", True)]


def test_new_leader_changes_membership_only_after_its_noop_commits() -> None:
    """The one-at-a-time bug (raft-dev, 2015): a committed change overwritten."""
    c = Cluster(["n1", "n2", "n3", "n4"])
    c.add("n5")
    c.add("n6")
    c.elect("n1", "n2", "n3", "n4")
    c.settle("n1", "n2", "n3", "n4")
    # n1 appends "add n5" (uncommitted, reaches nobody) and crashes.
    c.change("n1", ConfChange(ConfChangeKind.ADD_VOTER, "n5"))
    c.crash("n1")
    c.elect("n2", "n3", "n4")
    add_n6 = ConfChange(ConfChangeKind.ADD_VOTER, "n6")
    with pytest.raises(ConsensusError, match="no-op"):
        c.change("n2", add_n6)
    c.settle("n2", "n3", "n4")
    index = c.change("n2", add_n6)
    c.settle("n2", "n3", "n4", "n6")
    assert c.committed("n2") >= index
    # n1 returns with its stale change and cannot win, even with n5's vote.
    c.restart("n1")
    r1 = c.raft("n1")
    for _ in range(5 * 20):
        for nid in c.nodes:
            c.tick(nid)
        c.settle(*c.nodes)
    assert "n1" not in c.leaders()
    assert r1.log.term(index) == c.raft("n2").log.term(index)
    assert "n5" not in r1.conf_state().voters and "n6" in r1.conf_state().voters


def test_followers_and_transfers() -> None:
    """Proposals name the leader; a transfer hands over within one timeout."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    with pytest.raises(NotLeaderError) as exc:
        c.propose("n2", b"x")
    assert exc.value.leader == "n1"
    c.raft("n1").transfer_leader("n3")
    c.handle("n1")
    c.settle("n1", "n2", "n3")
    assert c.leaders() == ["n3"]


def test_learner_gets_entries_but_never_votes_or_counts() -> None:
    c = Cluster(["n1", "n2", "n3"], learners=["l1"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3", "l1")
    learner = c.raft("l1")
    assert learner.log.committed == c.committed("n1")
    c.tick("l1", 100)
    assert learner.role is Role.FOLLOWER
    c.take(lambda m: m.dst in ("n2", "n3"))
    c.propose("n1", b"x")
    c.settle("n1", "l1")  # only the learner acknowledges: no commit
    assert c.committed("n1") < c.raft("n1").log.last_index()


def test_single_voter_commits_alone() -> None:
    c = Cluster(["n1"])
    c.tick("n1", 30)
    assert c.leaders() == ["n1"]
    index = c.propose("n1", b"solo")
    c.handle("n1")
    assert c.nodes["n1"].applied[-1] == Entry(c.raft("n1").term, index, data=b"solo")
    c.read("n1", b"q")
    assert c.nodes["n1"].readies[-1].read_states[0].index == index


def _wipe(c: Cluster, nid: str) -> None:
    """The node's data folder deleted: it restarts with an empty log, its
    term and vote given back and passive, as node.server starts it when the
    marker beside the folder says so (node.marker)."""
    c.crash(nid)
    node = c.nodes[nid]
    hard = node.storage.hard_state
    node.storage = MemoryStorage(c.genesis)
    node.storage.set_hard_state(HardState(hard.term, hard.vote, 0))
    node.config = dataclasses.replace(node.config, start_passive=True)
    c.restart(nid)


def _old_leader_returns(c: Cluster) -> None:
    """n1, which holds the entry, comes back and leads; every node gets it."""
    c.restart("n1")
    c.elect("n1", "n3")
    c.settle("n1", "n2", "n3")
    for nid in ("n1", "n2", "n3"):
        assert any(e.data == b"acknowledged" for e in c.nodes[nid].applied)


def test_a_wiped_node_does_not_vote_a_stale_log_into_leadership() -> None:
    """An entry committed on {n1, n2}; n1 crashes and n2 loses its disk. A
    blank n2 voting would let stale n3 win without the entry (the fork a
    review found on real nodes); guarded, n2 waits, and n1 comes back."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    c.propose("n1", b"acknowledged")
    c.take(to("n3"))  # n3 is cut off: it never gets the entry
    c.settle("n1", "n2")
    index = c.committed("n1")
    assert c.raft("n1").log.term(index) == c.raft("n1").term
    c.crash("n1")
    _wipe(c, "n2")
    assert c.raft("n2").passive
    with pytest.raises(AssertionError, match="did not win"):
        c.elect("n3", "n2")
    assert c.leaders() == []
    _old_leader_returns(c)
    # Caught up with a leader that committed in its term: n2 votes again,
    # and counts its vote in this term as cast for that leader.
    assert not c.raft("n2").passive
    assert c.raft("n2").vote == "n1"


def test_a_wiped_node_and_one_that_never_ran_do_not_elect_each_other() -> None:
    """Both blank, but only one knows it lost what it held: electing either
    would drop the entry n1 holds (and n3 would lead a term n1 led)."""
    c = Cluster(["n1", "n2", "n3"])
    c.crash("n3")  # never runs until later
    c.elect("n1", "n2")
    c.propose("n1", b"acknowledged")
    c.settle("n1", "n2")
    c.crash("n1")
    _wipe(c, "n2")
    c.restart("n3")
    with pytest.raises(AssertionError, match="did not win"):
        c.elect("n3", "n2")
    c.tick("n2", 5 * c.raft("n2").config.election_tick)
    assert c.leaders() == []
    _old_leader_returns(c)


def test_a_wiped_node_neither_campaigns_nor_takes_over() -> None:
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.settle("n1", "n2", "n3")
    _wipe(c, "n3")
    r = c.raft("n3")
    c.tick("n3", 5 * r.config.election_tick)
    assert r.role is Role.FOLLOWER
    assert not [m for m in c.take(lambda m: m.src == "n3") if m.type in VOTES]
    c.step(Message(MT.TIMEOUT_NOW, "n1", "n3", c.raft("n1").term))
    assert r.role is Role.FOLLOWER  # a transfer to it is not taken either


def test_a_passive_node_holding_the_commit_leaves_passive_on_a_heartbeat() -> None:
    """A lost node that caught up while the append telling it the commit
    index went missing: on an idle leader only heartbeats follow, and they
    carry the leader's commit index (a review found such a node passive for
    good). A heartbeat of a leader ahead of it does not."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1", "n2", "n3")
    c.propose("n1", b"entry")
    c.settle("n1", "n2", "n3")
    n3 = c.raft("n3")
    n3.passive = True  # it holds everything, as if it had just caught up
    behind = Message(
        MT.HEARTBEAT, "n1", "n3", n3.term, commit=1, index=c.committed("n1") + 1
    )
    c.step(behind)
    assert n3.passive
    c.tick("n1", c.raft("n1").config.heartbeat_tick)
    c.settle("n1", "n2", "n3")
    assert not n3.passive and n3.vote == "n1"
