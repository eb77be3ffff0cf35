"""Named settings of the optional search techniques (``memvault.retrieval.hybrid.Techniques``),
for bench/locomo.py and bench/paraphrase.py to compare on the same stored memories.

A spec is a preset name (``off``, ``default`` (what the settings' defaults give), ``neighbours``,
``neighbours-wide``, ``feedback``, ``feedback-wide``, ``diversity``, ``vector-feedback``,
``all``) or
``NAME:field=value,field=value`` (fields of ``Techniques``, starting from all off), e.g.
``nb3:expand_seeds=3,expand_per_seed=2,expand_weight=0.5``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memvault.config import Settings
from memvault.retrieval.hybrid import Techniques


def configured() -> Techniques:
    """What a Memory with the default settings searches with."""
    fields = Settings.model_fields
    return Techniques(
        **{
            f.name: fields[f.name].default
            for f in dataclasses.fields(Techniques)
            if f.name in fields
        }
    )


PRESETS: dict[str, Techniques] = {
    "off": Techniques(),
    "default": configured(),
    "neighbours": Techniques(expand_seeds=5, expand_per_seed=2, expand_weight=0.2),
    "neighbours-wide": Techniques(expand_seeds=10, expand_per_seed=4, expand_weight=0.3),
    "feedback": Techniques(feedback_seeds=3, feedback_terms=8, feedback_weight=0.3),
    "feedback-wide": Techniques(feedback_seeds=10, feedback_terms=20, feedback_weight=0.3),
    "diversity": Techniques(diversity=0.3),
    "vector-feedback": Techniques(vector_feedback_seeds=3, vector_feedback_weight=0.3),
    "all": Techniques(expand_seeds=5, expand_weight=0.2, feedback_seeds=3, diversity=0.3),
    "entities": Techniques(
        vector_feedback_seeds=3, expand_seeds=5, expand_weight=0.2, expand_sources="entities"
    ),
    "entities-wide": Techniques(
        vector_feedback_seeds=3,
        expand_seeds=10,
        expand_per_seed=4,
        expand_weight=0.3,
        expand_sources="entities",
    ),
    "links": Techniques(
        vector_feedback_seeds=3,
        expand_seeds=5,
        expand_weight=0.2,
        expand_sources="conversation+entities",
    ),
}


def parse(spec: str) -> tuple[str, Techniques]:
    if ":" not in spec:
        if spec not in PRESETS:
            raise SystemExit(f"unknown technique preset {spec!r}: one of {', '.join(PRESETS)}")
        return spec, PRESETS[spec]
    name, _, fields = spec.partition(":")
    types = {f.name: f.type for f in dataclasses.fields(Techniques)}
    values: dict[str, Any] = {}
    for pair in filter(None, fields.split(",")):
        key, _, value = pair.partition("=")
        if key not in types:
            raise SystemExit(f"unknown Techniques field {key!r}")
        if types[key] in ("str", str):
            values[key] = value
        else:
            values[key] = int(value) if types[key] in ("int", int) else float(value)
    return name, Techniques(**values)


def describe(techniques: Techniques) -> str:
    changed = {
        f.name: getattr(techniques, f.name)
        for f in dataclasses.fields(Techniques)
        if getattr(techniques, f.name) != f.default
    }
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "all off"
