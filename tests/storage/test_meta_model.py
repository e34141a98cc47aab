"""Stateful check of SlotMeta: whatever order heads arrive in, the current head
is the winner of all heads applied so far (the convergence rule of RFC 0001, "Head order")."""

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rimio.core.head import Head, winner
from rimio.core.writes import CommitOutcome
from rimio.storage.meta import GroupMeta

head_strategy = st.builds(
    Head,
    kind=st.sampled_from(["meta", "tombstone"]),
    path=st.sampled_from(["a", "b"]),
    slot_id=st.just(0),
    generation=st.integers(1, 4),
    write_id=st.sampled_from(["", "w"]),
    size_bytes=st.integers(0, 3),
    etag=st.sampled_from(["x", "y"]),
    part_size=st.just(8),
    part_count=st.just(0),
)


class SlotMetaMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.group = GroupMeta(Path(self._dir.name) / "m.sqlite3")
        self.meta = self.group.slot(0)
        self.seen: dict[str, list[Head]] = {"a": [], "b": []}

    @rule(head=head_strategy)
    def apply(self, head: Head) -> None:
        head = Head(**{**{f: getattr(head, f) for f in (
            "kind", "path", "slot_id", "generation", "size_bytes", "etag", "part_size",
            "part_count", "timestamp")}, "write_id": ""})
        expected_win = winner([*self.seen[head.path], head]) == head and head not in self.seen[
            head.path]
        outcome, _ = self.meta.commit(head, [], now=1.0)
        assert (outcome is CommitOutcome.APPLIED) == expected_win
        self.seen[head.path].append(head)

    @invariant()
    def current_is_winner(self) -> None:
        for path, heads in self.seen.items():
            assert self.meta.current_head(path) == winner(heads)

    def teardown(self) -> None:
        self.group.close()
        self._dir.cleanup()


TestSlotMeta = SlotMetaMachine.TestCase
TestSlotMeta.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)
