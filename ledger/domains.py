"""Domain-separation prefixes and protocol strings, kept in one place.

Every hash or signature in the ledger starts with one of these so that a
value made for one purpose can never be taken for another.
"""

from __future__ import annotations

from typing import Final

# RFC 9162 §2.1: leaves and interior nodes of the log.
LOG_LEAF: Final = b"\x00"
LOG_NODE: Final = b"\x01"

# The state map's own prefixes, distinct from the log's, so a state-map node
# can never be presented as a log node or the other way round.
STATE_LEAF: Final = b"\x02"
STATE_NODE: Final = b"\x03"

DOC_ID: Final = b"agency-ledger/doc/v1"
RECORD_KEY: Final = b"agency-ledger/record/v1"
SUBMISSION: Final = b"agency-ledger/submission/v1\n"
GOVERNANCE: Final = b"agency-ledger/governance/v1\n"
