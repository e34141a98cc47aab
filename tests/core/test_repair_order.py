"""`visit_order`: each node walks differing slots in an order of its own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rimio.core.repair_order import visit_order


@given(st.text(min_size=1, max_size=20), st.sets(st.integers(0, 4095)))
def test_a_permutation_the_same_at_every_call(node: str, slots: set[int]) -> None:
    order = visit_order(node, slots)
    assert sorted(order) == sorted(slots)
    assert visit_order(node, reversed(sorted(slots))) == order


def test_nodes_walk_in_different_orders() -> None:
    slots = range(64)
    orders = [visit_order(f"node-{i}", slots) for i in (1, 2, 3)]
    assert orders[0] != orders[1] != orders[2] != orders[0]
    # the first slots each visits are mostly different ones
    firsts = [set(o[:16]) for o in orders]
    assert len(firsts[0] & firsts[1]) < 12 and len(firsts[1] & firsts[2]) < 12
