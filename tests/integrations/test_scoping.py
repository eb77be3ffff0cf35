"""The one rule adapters use to map a framework's key to a memvault scope (no framework needed)."""

from __future__ import annotations

import pytest

from memvault.errors import Forbidden, InvalidConfig, InvalidId, MissingScope
from memvault.integrations.scoping import ScopeBinding
from memvault.validation import Scope


def test_bound_ids_always_apply_and_a_rule_only_narrows() -> None:
    binding = ScopeBinding[str](user_id="alice", rule=lambda key: {"run_id": key})
    assert binding.scope_of("s1") == Scope(user_id="alice", run_id="s1")
    assert binding.scope_of(None) == Scope(user_id="alice")
    assert binding.bound_scope == Scope(user_id="alice")
    same = ScopeBinding[str](user_id="alice", rule=lambda key: {"user_id": key})
    assert same.scope_of("alice") == Scope(user_id="alice")
    with pytest.raises(Forbidden):
        same.scope_of("bob")


def test_what_names_no_scope_is_refused() -> None:
    with pytest.raises(InvalidConfig):
        ScopeBinding[str]()
    rule_only = ScopeBinding[tuple[str, ...]](rule=lambda ns: {"user_id": ns[1]})
    assert rule_only.bound_scope is None
    assert rule_only.scope_of(("memories", "bob")) == Scope(user_id="bob")
    with pytest.raises(MissingScope):
        rule_only.scope_of(("memories",))  # the rule raises IndexError
    with pytest.raises(MissingScope):
        rule_only.scope_of(None)
    with pytest.raises(InvalidConfig):
        ScopeBinding[str](rule=lambda key: {"namespace": key}).scope_of("x")
    with pytest.raises(InvalidId):
        ScopeBinding[str](rule=lambda key: {"user_id": key}).scope_of("two words")
    with pytest.raises(InvalidId):
        ScopeBinding[str](user_id="")
