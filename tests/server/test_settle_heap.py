"""A node moves what its start made out of the garbage collector's view (``settle_heap``)."""

from __future__ import annotations

import gc

from memvault.server.run import settle_heap


def test_the_start_objects_leave_the_collectors_generations() -> None:
    made = [[index] for index in range(1000)]  # containers: tracked by the collector
    assert any(obj is made for obj in gc.get_objects())
    try:
        frozen = settle_heap()
        assert frozen >= len(made)
        # Frozen objects are in the permanent generation, which no collection walks.
        assert not any(obj is made for obj in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(obj is made for obj in gc.get_objects())
