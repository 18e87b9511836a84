"""A node without Raft for tests of the web application: the routes read
its store; ``submit`` is for subclasses that need it."""

from __future__ import annotations

from collections.abc import Callable

from ledger.store import LedgerStore
from ledger.submission import Submission

BASE = "http://testserver"


class StubNode:
    """What ``api.deps.NodeLike`` asks of ``node.server.Node``."""

    agency = "police"

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    @property
    def is_leader(self) -> bool:
        return True

    def leader_url(self) -> str | None:
        return BASE

    def cluster_info(self) -> dict[str, object]:
        return {
            "agency": self.agency,
            "role": "leader",
            "height": self.store.height,
            "tree_size": self.store.tree_size,
            "members": [{"id": self.agency, "voter": True, "api_url": BASE}],
        }

    async def submit(
        self,
        raw: bytes,
        *,
        wait_final: bool = False,
        admit: Callable[[str], None] | None = None,
        decoded: Submission | None = None,
        checked: Callable[[], None] | None = None,
    ) -> object:
        raise NotImplementedError
