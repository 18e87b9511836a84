"""ledger.statenode: a stored node's encoding, decoding and splicing agree
(the bytes of the tree are consensus data: every node must write the same)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.statenode import decode_node, empty_node, encode_node, set_slot, splice

slots = st.lists(
    st.one_of(
        st.none(),
        st.tuples(st.binary(min_size=32, max_size=32), st.none()),
        st.tuples(
            st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32)
        ),
    ),
    min_size=16,
    max_size=16,
)


@settings(max_examples=300)
@given(old=slots, new=slots, changed=st.sets(st.integers(0, 15)))
def test_a_spliced_node_is_the_node_encoded_afresh(
    old: list[tuple[bytes, bytes | None] | None],
    new: list[tuple[bytes, bytes | None] | None],
    changed: set[int],
) -> None:
    # update() writes most nodes by splicing their changed slots into
    # their old bytes; that must be the very encoding of the new node.
    if all(slot is None for slot in old):
        old[0] = (bytes(32), None)
    node = empty_node()
    for nib, slot in enumerate(old):
        set_slot(node, nib, slot)
    raw = encode_node(node)
    assert decode_node(raw, b"") == node
    for nib in changed:
        set_slot(node, nib, new[nib])
    spliced = splice(raw, node, sorted(changed))
    assert spliced == encode_node(node)
