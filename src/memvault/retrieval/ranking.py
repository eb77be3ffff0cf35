"""Optional ranking adjustments after fusion: recency decay per memory type, reinforcement by reads.

Both are off by default (bench/locomo.py measured them: see docs/architecture.md, "Search").
When on, each candidate's score moves by a bounded amount, in units of the spread (standard
deviation) of the candidates' scores, so one setting means the same under z-score fusion, RRF
and the single-side modes, whose scores have very different scales:

- recency: ``-recency_weight * (1 - 0.5 ** (age / half_life))``, between ``-recency_weight``
  and 0; the age counts from the memory's last change (``updated_at``) to the ranking clock's
  now, and only memory types given a half-life decay.
- reinforcement: ``+reinforcement_weight * reads / (reads + READS_AT_HALF)``, between 0 and
  ``reinforcement_weight``, from ``access_count`` (the reads counted off the search path).

Everything comes from the rows the search reads anyway (one batched read of the candidates);
no query per hit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from memvault.storage.rows import MemoryRow

__all__ = ["Adjustment", "Clock", "RankingAdjustments", "score_spread", "system_clock"]

DAY_SECONDS = 86_400.0
# Reads that earn half of the reinforcement weight: the lift saturates, so a memory read
# thousands of times cannot climb above far closer matches without bound.
READS_AT_HALF = 10.0
# Below this spread the candidates' scores are equal for ranking purposes (one candidate, or
# ties); the adjustments then use a spread of 1 instead of dividing by nothing.
MIN_SPREAD = 1e-9

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Adjustment:
    """What the adjustments did to one hit's score (shown by ``explain=True``)."""

    decay: (
        float | None
    )  # the recency factor 0.5 ** (age / half-life); None: the type does not decay
    recency: float  # the score change from decay, <= 0
    reinforcement: float  # the score change from reads, >= 0

    @property
    def total(self) -> float:
        return self.recency + self.reinforcement


@dataclass(frozen=True, slots=True)
class RankingAdjustments:
    """The settings of the adjustments; ``enabled`` is False when none would change a score."""

    half_life_days: Mapping[str, float] = field(default_factory=dict)
    recency_weight: float = 1.0
    reinforcement_weight: float = 0.0

    @property
    def enabled(self) -> bool:
        decays = bool(self.half_life_days) and self.recency_weight > 0
        return decays or self.reinforcement_weight > 0

    def decay(self, row: MemoryRow, now: datetime) -> float | None:
        half_life = self.half_life_days.get(row.memory_type)
        if half_life is None:
            return None
        changed = datetime.fromisoformat(row.updated_at)
        # A row stamped after the clock's now (a clock set in the past) counts as age 0.
        age_days = max(0.0, (now - changed).total_seconds() / DAY_SECONDS)
        return float(0.5 ** (age_days / half_life))

    def adjust(self, row: MemoryRow, now: datetime, spread: float) -> Adjustment:
        decay = self.decay(row, now)
        recency = 0.0 if decay is None else -self.recency_weight * (1.0 - decay) * spread
        reads = max(0, row.access_count)
        lift = self.reinforcement_weight * reads / (reads + READS_AT_HALF) * spread
        return Adjustment(decay, recency, lift)


def score_spread(scores: Sequence[float]) -> float:
    """The standard deviation of the candidates' scores (1 when they are all equal)."""
    if len(scores) < 2:
        return 1.0
    mean = sum(scores) / len(scores)
    spread = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    return spread if spread > MIN_SPREAD else 1.0
