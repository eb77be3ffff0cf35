"""A filter reads each row's metadata once per statement, and a list page runs it once."""

from __future__ import annotations

from typing import Any

from memvault import Memory


def _count_decryptions(memory: Memory) -> list[int]:
    store = memory._store
    real = store._decrypt_metadata
    calls = [0]

    def counting(*args: Any) -> str:
        calls[0] += 1
        return real(*args)

    store._decrypt_metadata = counting  # type: ignore[method-assign]
    return calls


def test_a_list_page_and_its_count_run_the_filter_once(memory: Memory) -> None:
    memory.add_many(
        [{"messages": f"fact {i}", "user_id": "u", "metadata": {"n": i}} for i in range(30)]
    )
    wanted = {"OR": [{"n": {"gte": 10}}, {"memory_type": "episodic"}]}
    expected = memory.get_all(user_id="u", filters=wanted, top_k=5, offset=3)["results"]
    calls = _count_decryptions(memory)
    results, total = memory.get_page(user_id="u", filters=wanted, top_k=5, offset=3)
    assert calls[0] <= 30
    assert total == memory.count(user_id="u", filters=wanted) == 20
    assert [r["id"] for r in results] == [r["id"] for r in expected]
    assert memory.get_page(user_id="u", filters=wanted, top_k=5, offset=40) == ([], 20)


def test_metadata_conditions_do_not_multiply_the_work_per_row(memory: Memory) -> None:
    memory.add_many(
        [{"messages": f"fact {i}", "user_id": "u", "metadata": {"k": i}} for i in range(10)]
    )
    calls = _count_decryptions(memory)
    wide = {"AND": [{"OR": [{f"a{i}": i} for i in range(300)] + [{"k": 3}]}, {"k": {"lt": 5}}]}
    assert memory.count(user_id="u", filters=wide) == 1
    assert calls[0] <= 10
