"""``add(infer=True)``: extract facts with an LLM, reconcile them with the scope's memories, and
apply every resulting change in one transaction.

1. Extraction: one call turns the messages (with their speakers and the observation date) into
   self-contained facts, each typed semantic, episodic or procedural.
2. Reconciliation: ``similar(text, k)`` (the caller's own scoped search) gives the existing
   memories closest to each fact; they are shown to the model in one call under aliases ``m1``,
   ``m2``, ... (never their ids), and the model answers ADD, UPDATE, DELETE or NONE per fact. An
   alias it was not shown is refused: that fact is added, and the refusal is in its result.
3. One ``changes.apply``: the whole answer commits or nothing does.

Every memory written here carries ``metadata["provenance"]`` (job id, SHA-256 of each source
message, actor, model, prompt version, observation time), sealed with the rest of the metadata,
and ``metadata["inferred"] = True``. When the model's answer stays unusable after one repair
retry, or the LLM stays unreachable, the messages are stored as they are with ``inferred:
false`` and the error in each result: an LLM outage never loses what was sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from memvault.clock import iso
from memvault.core import changes, reads
from memvault.core.changes import Add, Change, Delete, Update
from memvault.core.engine import Engine
from memvault.errors import InvalidInput, LLMError, NotFound
from memvault.llm.client import LLM, ChatMessage
from memvault.llm.parsing import parse_as
from memvault.llm.prompts import (
    NO_INSTRUCTIONS,
    Decision,
    Decisions,
    Extraction,
    Fact,
    Instructions,
    extraction_messages,
    reconciliation_messages,
    repair_messages,
)
from memvault.security.poisoning import flag_metadata, reflag_metadata
from memvault.validation import Message, check_text

__all__ = ["PROVENANCE_KEY", "Similar", "infer", "source_hashes"]

PROVENANCE_KEY = "provenance"
# (fact text, its vector, k) -> up to k (memory id, text) of the scope, most similar first
Similar = Callable[[str, "npt.NDArray[np.float32]", int], list[tuple[str, str]]]
_M = TypeVar("_M", bound=BaseModel)
EVENTS = ("ADD", "UPDATE", "DELETE", "NONE")


def source_hashes(messages: Sequence[Message]) -> list[str]:
    """SHA-256 of each source message (role, name and content as canonical JSON)."""
    return [
        hashlib.sha256(
            json.dumps(
                {"role": m.role, "name": m.name, "content": m.content},
                ensure_ascii=False,
                sort_keys=True,
                separators=(",", ":"),
            ).encode()
        ).hexdigest()
        for m in messages
    ]


@dataclass(slots=True)
class _Planned:
    """One fact's change and what its result reports besides ``changes.apply``'s answer."""

    change: Change | None
    fact: str
    extra: dict[str, Any]
    none_id: str | None = None
    instead: Add | None = None  # an UPDATE's fallback when its memory was deleted meanwhile


@functools.cache
def _json_schema(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema())


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema, built once per model (pydantic takes ~10 ms a call) and handed
    out as a fresh copy, so a client that edits what it sends cannot change the next call's."""
    schema: dict[str, Any] = json.loads(_json_schema(model))
    return schema


def ask(llm: LLM, messages: list[ChatMessage], model: type[_M]) -> _M:
    """One call, parsed as ``model``; on unusable output one repair call, then ``LLMBadOutput``."""
    schema = _schema_of(model)
    answer = llm.complete(messages, schema=schema)
    try:
        return parse_as(answer, model)
    except LLMError:
        repaired = llm.complete(repair_messages(messages, answer), schema=schema)
        return parse_as(repaired, model)


def infer(
    engine: Engine,
    raw: Sequence[Add],
    *,
    similar: Similar,
    llm: LLM,
    observed_at: datetime,
    metadata: dict[str, Any],
    job_id: str | None = None,
    live_job: str | None = None,
    top_k: int = 5,
    instructions: Instructions = NO_INSTRUCTIONS,
) -> list[dict[str, Any]]:
    """Infer memories from ``raw`` (the validated messages of one add, as plain ``Add``s of one
    scope, with its actor, expiry and importance) and apply them in one transaction;
    ``metadata`` is the caller's, before any flag.

    Returns one result per fact: ``{"id", "memory", "event", "inferred": True, ...}``; UPDATE
    adds ``previous_memory``; a refused alias adds ``refused``. On LLM failure: the raw
    messages' results with ``"inferred": False`` and ``"error": {"code", "message"}``.
    ``live_job``: a queued job that must still exist when the changes commit (see
    ``changes.apply``)."""
    if not raw:
        return []
    messages = [add.message for add in raw]
    provenance = {
        "job_id": job_id,
        "sources": source_hashes(messages),
        "actor_id": raw[0].actor_id,
        "model": llm.model_id,
        "prompt_version": instructions.version,
        "observed_at": iso(observed_at),
    }
    try:
        prompt = extraction_messages(messages, iso(observed_at), instructions)
        extraction = ask(llm, prompt, Extraction)
        facts = _unique(extraction.facts, engine.settings.max_text_bytes)
        template = replace(raw[0], metadata=metadata)
        plan = _reconcile(engine, template, facts, similar, llm, provenance, top_k, instructions)
    except LLMError as exc:
        return _fallback(engine, raw, metadata, provenance, exc, live_job)
    return _apply(engine, plan, live_job)


def _valid_text(text: str | None, max_bytes: int) -> str | None:
    """The model's text when it could be stored (valid Unicode, no NUL, within the limit)."""
    if text is None:
        return None
    try:
        return check_text(text.strip(), max_bytes)
    except InvalidInput:
        return None


def _unique(facts: list[Fact], max_bytes: int) -> list[Fact]:
    """The facts worth storing: valid texts, each once (an invalid one is dropped)."""
    seen: set[str] = set()
    kept = []
    for fact in facts:
        text = _valid_text(fact.text, max_bytes)
        if text and text not in seen:
            seen.add(text)
            kept.append(Fact(text=text, type=fact.type, entities=fact.entities))
    return kept


def _reconcile(
    engine: Engine,
    template: Add,
    facts: list[Fact],
    similar: Similar,
    llm: LLM,
    provenance: dict[str, Any],
    top_k: int,
    instructions: Instructions,
) -> list[_Planned]:
    aliases: dict[str, str] = {}  # alias -> memory id
    texts: dict[str, str] = {}  # alias -> text shown
    by_id: dict[str, str] = {}
    # One embedding call for every fact: the vectors find the similar memories, then are
    # stored with the facts that become new memories (same text, same vector).
    vectors = engine.embed([fact.text for fact in facts]) if facts else np.zeros((0, 1), np.float32)
    for fact, vector in zip(facts, vectors, strict=True):
        for memory_id, shown in similar(fact.text, vector, top_k):
            if memory_id not in by_id:
                name = f"m{len(aliases) + 1}"
                aliases[name], texts[name], by_id[memory_id] = memory_id, shown, name
    decisions: dict[str, Decision] = {}
    if aliases and facts:
        fact_list = [(f"f{i + 1}", fact.text) for i, fact in enumerate(facts)]
        prompt = reconciliation_messages(fact_list, list(texts.items()), instructions)
        answer = ask(llm, prompt, Decisions)
        for answered in answer.decisions:
            if answered.fact is not None:
                decisions.setdefault(answered.fact, answered)
    meta = {**template.metadata, "inferred": True, PROVENANCE_KEY: provenance}
    used: set[str] = set()
    plan: list[_Planned] = []
    for index, (fact, vector) in enumerate(zip(facts, vectors, strict=True)):
        decision = decisions.get(f"f{index + 1}")
        add = _planned_add(template, fact, meta, vector)
        if decision is None or decision.event not in EVENTS or decision.event == "ADD":
            plan.append(add)
            continue
        alias = decision.memory
        if alias is None or alias not in aliases or alias in used:
            add.extra["refused"] = {"event": decision.event, "memory": alias}
            plan.append(add)
            continue
        used.add(alias)
        memory_id = aliases[alias]
        if decision.event == "NONE":
            plan.append(_Planned(None, fact.text, {}, none_id=memory_id))
        elif decision.event == "DELETE":
            delete = Delete(memory_id, missing_ok=True, provenance=provenance)
            plan.append(_Planned(delete, fact.text, {}))
        else:
            text = _valid_text(decision.text, engine.settings.max_text_bytes) or fact.text
            current = reads.get(engine, memory_id)
            old_meta = dict(current["metadata"]) if current else {}
            old_meta.update({"inferred": True, PROVENANCE_KEY: provenance})
            new_meta = reflag_metadata(old_meta, text)  # the old flag was about the old text
            update = Update(memory_id, text, new_meta, provenance=provenance)
            plan.append(_Planned(update, fact.text, {}, instead=add.change))  # type: ignore[arg-type]
    return plan


def _planned_add(
    template: Add, fact: Fact, meta: dict[str, Any], vector: npt.NDArray[np.float32]
) -> _Planned:
    add = replace(
        template,
        message=Message(fact.text, "user", None),
        metadata=flag_metadata(meta, fact.text),
        memory_type=fact.type,
        redactions=[],
        vector=vector,
        provenance=meta[PROVENANCE_KEY],
        entities=tuple(fact.entities),
    )
    return _Planned(add, fact.text, {})


def _embed(engine: Engine, plan: list[_Planned]) -> None:
    missing: list[Add | Update] = [
        p.change for p in plan if isinstance(p.change, Add | Update) and p.change.vector is None
    ]
    if missing:
        texts = [c.message.content if isinstance(c, Add) else (c.text or "") for c in missing]
        for change, vector in zip(missing, engine.embed(texts), strict=True):
            change.vector = vector


def _apply(engine: Engine, plan: list[_Planned], live_job: str | None) -> list[dict[str, Any]]:
    """The plan in one transaction. Should it fail because the scope changed since the model
    saw it, nothing of it was written: UPDATEs are replaced and the plan is applied again."""
    _embed(engine, plan)
    to_apply = [p.change for p in plan if p.change is not None]
    try:
        applied = changes.apply(engine, to_apply, live_job=live_job) if to_apply else []
    except changes.JobGone:
        raise
    except (InvalidInput, NotFound) as exc:
        for item in plan:
            if not isinstance(item.change, Update):
                continue
            if isinstance(exc, NotFound):
                # The memory was deleted meanwhile: the fact is stored as a new memory.
                item.change, item.instead = item.instead, None
                item.extra["replaced"] = "UPDATE"
            else:
                # An UPDATE to a text another memory of the scope already holds: keep that
                # memory (the fact is known).
                item.none_id, item.change = item.change.memory_id, None
        _embed(engine, plan)
        to_apply = [p.change for p in plan if p.change is not None]
        applied = changes.apply(engine, to_apply, live_job=live_job) if to_apply else []
    results: list[dict[str, Any]] = []
    answers = iter(applied)
    for item in plan:
        if item.change is None:
            result: dict[str, Any] = {"id": item.none_id, "memory": item.fact, "event": "NONE"}
        else:
            answer = next(answers)
            result = {key: answer[key] for key in ("id", "memory", "event") if key in answer}
            if "previous_memory" in answer:
                result["previous_memory"] = answer["previous_memory"]
            if isinstance(item.change, Delete):
                result["fact"] = item.fact
        result["inferred"] = True
        result.update(item.extra)
        results.append(result)
    return results


def _fallback(
    engine: Engine,
    raw: Sequence[Add],
    metadata: dict[str, Any],
    provenance: dict[str, Any],
    error: LLMError,
    live_job: str | None,
) -> list[dict[str, Any]]:
    """Store the messages as they are, flagged ``inferred: false``, reporting the error; the
    provenance (which job, which model failed) is kept as for inferred memories."""
    report = {"code": error.code, "message": error.message}
    plain = [
        replace(
            add,
            metadata=flag_metadata(
                {
                    **metadata,
                    "inferred": False,
                    "inference_error": error.code,
                    PROVENANCE_KEY: provenance,
                },
                add.message.content,
            ),
            vector=None,
            provenance=provenance,
        )
        for add in raw
    ]
    for add, vector in zip(plain, engine.embed([a.message.content for a in plain]), strict=True):
        add.vector = vector
    results = changes.apply(engine, list(plain), live_job=live_job)
    for result in results:
        result["inferred"] = False
        result["error"] = report
    return results
