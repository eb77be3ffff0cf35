"""A hypothesis state machine of the ``Memory`` API against a plain Python model.

Random sequences of add (plain and with agent/run scopes), update, delete, delete_all, erase_user,
get, get_all, count, history and search, over two namespaces that share user ids, run against a
real ``Memory`` (hash embedder, a fresh home per run) and against ``Model``: a dict of live
memories and a list of history events per id. After every step each scope's memories, counts and
every known id's history must equal the model's; no read ever shows another namespace's or
another scope's memory; an erased user leaves nothing behind, not even history.

The model follows memvault's documented rules, written out here independently of its code: an
add of a text the exact same scope (user, agent and run ids) already holds, compared after NFKC,
case folding and space folding, answers ``NONE`` with the existing id and records a ``NONE``
event on it; an update to a text another memory of the exact same scope holds is refused
(``invalid_input``) and changes nothing; a read by ``user_id`` (or agent, or run) sees every
memory with that id, whatever its other ids.

Sized like the other fuzz tests: ~25 runs of up to 30 steps in ``make test``, many more (and
longer) under ``make fuzz`` (``MEMVAULT_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from memvault import HashEmbedder, Memory, MemvaultError
from memvault.retrieval.hybrid import Mode
from tests.fuzz.hostile import EXAMPLES, fuzz_settings

pytestmark = pytest.mark.fuzz

# 25 runs in ``make test`` (EXAMPLES is 12 there); a quarter of MEMVAULT_FUZZ_EXAMPLES, and
# twice the steps, under ``make fuzz``.
RUNS = max(25, EXAMPLES // 4)
STEPS = 30 if EXAMPLES <= 12 else 60

NAMESPACES = ("default", "other")
USERS = ("alice", "bob")
AGENT = "helper"
RUN = "run-1"

# Few texts, so that duplicates are frequent: each family holds spellings of one memory once
# normalized (case, spaces, full-width letters, a composed and a decomposed accent, ß and ss).
# Quotes, SQL and FTS syntax, other scripts and an emoji on the way.
FAMILIES = (
    ("likes green tea", "Likes  GREEN\ttea", "\uff4c\uff49\uff4b\uff45\uff53 green tea"),
    ('O\'Brien said "hi"', 'o\'brien SAID  "hi"'),
    ("caf\u00e9 au lait", "cafe\u0301 au lait"),
    ("Stra\u00dfe in Berlin", "strasse in berlin"),
    ("'; DROP TABLE memories; --",),
    ('tea OR "coffee" NEAR(x) *',),
    ("\u65e5\u672c\u8a9e\u306e\u30e1\u30e2",),
    ("owl \U0001f989 at night", "OWL \U0001f989 AT NIGHT"),
)
TEXTS = tuple(text for family in FAMILIES for text in family)


def normalized(text: str) -> str:
    """The dedup form memvault documents: NFKC, case folding, runs of space folded to one."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def spellings(text: str) -> tuple[str, ...]:
    """Every text of the alphabet that is the same memory as ``text``."""
    return next(family for family in FAMILIES if text in family)


@dataclass(frozen=True)
class Owner:
    """Who a memory belongs to inside its namespace."""

    user_id: str | None
    agent_id: str | None
    run_id: str | None

    def kwargs(self) -> dict[str, Any]:
        ids = {"user_id": self.user_id, "agent_id": self.agent_id, "run_id": self.run_id}
        return {name: value for name, value in ids.items() if value is not None}


OWNERS = [
    Owner(user, agent, run)
    for user in (*USERS, None)
    for agent in (None, AGENT)
    for run in (None, RUN)
    if (user, agent, run) != (None, None, None)
]
# The scopes every invariant reads: each user, the agent and the run (the last two span users).
READ_SCOPES: list[dict[str, Any]] = [{"user_id": user} for user in USERS] + [
    {"agent_id": AGENT},
    {"run_id": RUN},
]


def within(owner: Owner, scope: dict[str, Any]) -> bool:
    """Whether a read of ``scope`` sees a memory of ``owner``: every id it names matches."""
    return all(getattr(owner, name) == value for name, value in scope.items())


@dataclass(frozen=True)
class Event:
    event: str
    old: str | None
    new: str | None


@dataclass
class Tracked:
    """One memory id the machine created: where it lives, its text while live, its history."""

    namespace: str
    owner: Owner
    text: str | None  # None once deleted
    events: list[Event] = field(default_factory=list)
    erased: bool = False  # its user was erased: no row and no history left


@dataclass
class Model:
    memories: dict[str, Tracked] = field(default_factory=dict)

    def live(self, namespace: str, scope: dict[str, Any]) -> dict[str, str]:
        return {
            memory_id: tracked.text
            for memory_id, tracked in self.memories.items()
            if tracked.namespace == namespace
            and tracked.text is not None
            and within(tracked.owner, scope)
        }

    def holder(self, namespace: str, owner: Owner, text: str) -> str | None:
        """The live memory of exactly ``owner`` whose text is ``text`` once normalized."""
        for memory_id, tracked in self.memories.items():
            if (
                tracked.namespace == namespace
                and tracked.owner == owner
                and tracked.text is not None
                and normalized(tracked.text) == normalized(text)
            ):
                return memory_id
        return None

    def known_user(self, namespace: str, user_id: str) -> bool:
        """A user with any memory or history in the namespace (erase refuses any other)."""
        return any(
            t.namespace == namespace and t.owner.user_id == user_id and not t.erased
            for t in self.memories.values()
        )


class MemoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="memvault-state-"))
        self.memory = Memory(self.home, embedder=HashEmbedder())
        self.model = Model()

    def teardown(self) -> None:
        self.memory.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def view(self, namespace: str) -> Memory:
        return self.memory.namespaced(namespace)

    def ids(self, *, live: bool) -> list[str]:
        return sorted(
            memory_id
            for memory_id, tracked in self.model.memories.items()
            if (tracked.text is not None) == live and not tracked.erased
        )

    # --- writes ----------------------------------------------------------------------------

    @initialize(
        texts=st.lists(st.sampled_from(TEXTS), min_size=2, max_size=3, unique_by=normalized)
    )
    def same_users_in_both_namespaces(self, texts: list[str]) -> None:
        """Every run starts with the same texts of alice's in each namespace, and bob's first."""
        for namespace in NAMESPACES:
            for text in texts:
                self.add_checked(namespace, Owner("alice", None, None), text)
        self.add_checked(NAMESPACES[0], Owner("bob", None, None), texts[0])

    @rule(
        namespace=st.sampled_from(NAMESPACES),
        owner=st.sampled_from(OWNERS),
        text=st.sampled_from(TEXTS),
    )
    def add(self, namespace: str, owner: Owner, text: str) -> None:
        self.add_checked(namespace, owner, text)

    @precondition(lambda self: self.ids(live=True))
    @rule(data=st.data(), where=st.sampled_from(["same scope", "other namespace", "other user"]))
    def add_again(self, data: st.DataObject, where: str) -> None:
        """Another spelling of a live memory's text: a duplicate in its own scope only."""
        memory_id = data.draw(st.sampled_from(self.ids(live=True)), label="memory_id")
        tracked = self.model.memories[memory_id]
        assert tracked.text is not None
        text = data.draw(st.sampled_from(spellings(tracked.text)), label="text")
        namespace, owner = tracked.namespace, tracked.owner
        if where == "other namespace":
            namespace = next(ns for ns in NAMESPACES if ns != namespace)
        elif where == "other user":
            other = next(user for user in USERS if user != owner.user_id)
            owner = Owner(other, owner.agent_id, owner.run_id)
        self.add_checked(namespace, owner, text)

    def add_checked(self, namespace: str, owner: Owner, text: str) -> None:
        answer = self.view(namespace).add(text, **owner.kwargs())["results"]
        assert len(answer) == 1, answer
        result = answer[0]
        existing = self.model.holder(namespace, owner, text)
        if existing is not None:
            assert (result["event"], result["id"]) == ("NONE", existing), (text, result)
            self.model.memories[existing].events.append(Event("NONE", None, None))
            return
        assert result["event"] == "ADD", (text, result)
        assert result["id"] not in self.model.memories
        assert result["memory"] == text
        self.model.memories[result["id"]] = Tracked(
            namespace, owner, text, [Event("ADD", None, text)]
        )

    @precondition(lambda self: self.ids(live=True))
    @rule(data=st.data(), text=st.sampled_from(TEXTS))
    def update(self, data: st.DataObject, text: str) -> None:
        memory_id = data.draw(st.sampled_from(self.ids(live=True)), label="memory_id")
        self.update_checked(memory_id, text)

    @precondition(lambda self: self.ids(live=True))
    @rule(data=st.data())
    def update_to_a_held_text(self, data: st.DataObject) -> None:
        """A spelling of a live memory's text (its own, or another's: refused in one scope)."""
        live = self.ids(live=True)
        memory_id = data.draw(st.sampled_from(live), label="memory_id")
        holder = self.model.memories[data.draw(st.sampled_from(live), label="holder")]
        assert holder.text is not None
        self.update_checked(memory_id, data.draw(st.sampled_from(spellings(holder.text))))

    def update_checked(self, memory_id: str, text: str) -> None:
        tracked = self.model.memories[memory_id]
        holder = self.model.holder(tracked.namespace, tracked.owner, text)
        view = self.view(tracked.namespace)
        if holder is not None and holder != memory_id:
            with pytest.raises(MemvaultError) as refused:
                view.update(memory_id, text)
            assert refused.value.code == "invalid_input", refused.value
            return
        answer = view.update(memory_id, text)["result"]
        assert (answer["id"], answer["memory"]) == (memory_id, text), answer
        assert tracked.text is not None
        tracked.events.append(Event("UPDATE", tracked.text, text))
        tracked.text = text

    @precondition(lambda self: self.ids(live=True))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        memory_id = data.draw(st.sampled_from(self.ids(live=True)), label="memory_id")
        tracked = self.model.memories[memory_id]
        assert self.view(tracked.namespace).delete(memory_id)["id"] == memory_id
        tracked.events.append(Event("DELETE", tracked.text, None))
        tracked.text = None

    @precondition(lambda self: self.ids(live=True) or self.ids(live=False))
    @rule(data=st.data(), text=st.sampled_from(TEXTS))
    def write_from_the_other_namespace(self, data: st.DataObject, text: str) -> None:
        """An id is only reachable from its own namespace: update and delete find nothing."""
        memory_id = data.draw(
            st.sampled_from(self.ids(live=True) + self.ids(live=False)), label="memory_id"
        )
        tracked = self.model.memories[memory_id]
        other = self.view(next(ns for ns in NAMESPACES if ns != tracked.namespace))
        for write in (lambda: other.update(memory_id, text), lambda: other.delete(memory_id)):
            with pytest.raises(MemvaultError) as refused:
                write()
            assert refused.value.code == "not_found", refused.value

    @precondition(lambda self: self.ids(live=False))
    @rule(data=st.data())
    def delete_again(self, data: st.DataObject) -> None:
        memory_id = data.draw(st.sampled_from(self.ids(live=False)), label="memory_id")
        with pytest.raises(MemvaultError) as refused:
            self.view(self.model.memories[memory_id].namespace).delete(memory_id)
        assert refused.value.code == "not_found", refused.value

    @rule(namespace=st.sampled_from(NAMESPACES), scope=st.sampled_from(READ_SCOPES))
    def delete_all(self, namespace: str, scope: dict[str, Any]) -> None:
        doomed = self.model.live(namespace, scope)
        answer = self.view(namespace).delete_all(**scope)
        assert answer["deleted"] == len(doomed), (answer, doomed)
        for memory_id, text in doomed.items():
            tracked = self.model.memories[memory_id]
            tracked.events.append(Event("DELETE", text, None))
            tracked.text = None

    @rule(namespace=st.sampled_from(NAMESPACES), user_id=st.sampled_from(USERS))
    def erase_user(self, namespace: str, user_id: str) -> None:
        view = self.view(namespace)
        if not self.model.known_user(namespace, user_id):
            with pytest.raises(MemvaultError) as refused:
                view.erase_user(user_id)
            assert refused.value.code == "not_found", refused.value
            return
        gone = [
            tracked
            for tracked in self.model.memories.values()
            if tracked.namespace == namespace
            and tracked.owner.user_id == user_id
            and not tracked.erased
        ]
        answer = view.erase_user(user_id)
        assert answer["memories_deleted"] == sum(t.text is not None for t in gone), answer
        assert answer["history_deleted"] == sum(len(t.events) for t in gone), answer
        for tracked in gone:
            tracked.text = None
            tracked.events = []
            tracked.erased = True

    # --- reads -----------------------------------------------------------------------------

    @rule(
        namespace=st.sampled_from(NAMESPACES),
        scope=st.sampled_from(READ_SCOPES),
        query=st.sampled_from(TEXTS),
        mode=st.sampled_from(get_args(Mode)),
    )
    def search(self, namespace: str, scope: dict[str, Any], query: str, mode: Mode) -> None:
        allowed = self.model.live(namespace, scope)
        found = self.view(namespace).search(query, **scope, top_k=50, mode=mode)
        for hit in found["results"]:
            assert hit["id"] in allowed, (namespace, scope, hit["id"], hit["memory"])
            assert hit["memory"] == allowed[hit["id"]], hit
        if mode == "vector":  # the hash embedder ranks every memory of the scope
            assert {hit["id"] for hit in found["results"]} == set(allowed)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def every_scope_holds_what_the_model_holds(self) -> None:
        for namespace in NAMESPACES:
            view = self.view(namespace)
            for scope in READ_SCOPES:
                expected = self.model.live(namespace, scope)
                rows = view.get_all(**scope, top_k=1000)["results"]
                assert {row["id"]: row["memory"] for row in rows} == expected, (namespace, scope)
                assert len(rows) == len(expected), "an id listed twice"
                assert view.count(**scope) == len(expected), (namespace, scope)

    @invariant()
    def every_id_reads_and_has_history_in_its_namespace_only(self) -> None:
        for memory_id, tracked in self.model.memories.items():
            own = self.view(tracked.namespace)
            other = self.view(next(ns for ns in NAMESPACES if ns != tracked.namespace))
            got = own.get(memory_id)
            if tracked.text is None:
                assert got is None, (memory_id, got)
            else:
                assert got is not None, memory_id
                assert got["memory"] == tracked.text
                owner = tracked.owner
                assert (got["user_id"], got["agent_id"], got["run_id"]) == (
                    owner.user_id,
                    owner.agent_id,
                    owner.run_id,
                )
            events = own.history(memory_id)
            assert [Event(e["event"], e["old_memory"], e["new_memory"]) for e in events] == (
                tracked.events
            ), memory_id
            assert all(e["memory_id"] == memory_id for e in events)
            assert all(e["user_id"] == tracked.owner.user_id for e in events)
            assert other.get(memory_id) is None, memory_id
            assert other.history(memory_id) == [], memory_id


def test_memory_api_follows_the_model() -> None:
    run_state_machine_as_test(
        MemoryMachine,
        settings=settings(fuzz_settings(RUNS), stateful_step_count=STEPS),
    )


def test_each_family_is_one_memory_and_families_differ() -> None:
    """The alphabet means what the machine assumes: spellings of a family dedup to one memory,
    texts of different families do not."""
    assert all(len({normalized(text) for text in family}) == 1 for family in FAMILIES)
    assert len({normalized(family[0]) for family in FAMILIES}) == len(FAMILIES)
