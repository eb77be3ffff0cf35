"""A deterministic synthetic corpus of personal facts and questions, for speed benchmarks."""

from __future__ import annotations

import random

NAMES = [
    "Alice",
    "Bob",
    "Carol",
    "Dmitri",
    "Eve",
    "Farah",
    "Gustav",
    "Hana",
    "Ivan",
    "Jun",
    "Kemal",
    "Lena",
]
VERBS = [
    "loves",
    "hates",
    "is learning",
    "teaches",
    "collects",
    "dreams about",
    "writes about",
    "photographs",
    "cooks",
    "repairs",
    "paints",
    "studies",
    "sells",
    "reviews",
    "plans a trip for",
]
OBJECTS = [
    "Italian food",
    "the cello",
    "vintage cameras",
    "mountain hiking",
    "Japanese pottery",
    "jazz records",
    "sourdough bread",
    "electric bikes",
    "marathon training",
    "chess openings",
    "tropical fish",
    "rose gardens",
    "board games",
    "sci-fi novels",
    "salsa dancing",
    "rock climbing",
    "woodworking",
    "birdwatching",
    "espresso machines",
    "sailing boats",
    "vegan recipes",
    "old maps",
    "street art",
    "yoga retreats",
]
WHEN = [
    "since childhood",
    "every weekend",
    "last summer",
    "in the evenings",
    "with friends",
    "after work",
    "on holidays",
    "this year",
    "for a decade",
    "on Sundays",
]
PLACES = [
    "in Lisbon",
    "in Berlin",
    "near the lake",
    "at the community center",
    "in Kyoto",
    "downtown",
    "at home",
    "in the mountains",
    "by the sea",
    "in a small studio",
]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of measured values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 and the count of latencies in milliseconds."""
    return {
        "p50": round(pct(values, 0.50), 2),
        "p95": round(pct(values, 0.95), 2),
        "p99": round(pct(values, 0.99), 2),
        "n": len(values),
    }


def table_head(*cells: str) -> list[str]:
    """A markdown table's header row and the rule under it."""
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


LARGE_USER = "large-user"
USER_SIZE = 100


def layout(count: int) -> list[tuple[str, str]]:
    """(user_id, text) for ``count`` memories spread over many users: one large user holds a
    tenth of them (10,000 of 100,000), the others hold 100 each."""
    texts = facts(count)
    large = count // 10
    return [(LARGE_USER, t) for t in texts[:large]] + [
        (f"user-{i // USER_SIZE:05d}", t) for i, t in enumerate(texts[large:])
    ]


def small_users(count: int) -> list[str]:
    return sorted({user for user, _ in layout(count)} - {LARGE_USER})


def facts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        out.append(
            f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(WHEN)} "
            f"{rng.choice(PLACES)} (note {i})"
        )
    return out


def questions(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    templates = [
        "what does {n} like about {o}?",
        "who {v} {o}?",
        "where does {n} practise {o}?",
        "does {n} enjoy {o} {w}?",
        "tell me about {o} {p}",
    ]
    return [
        rng.choice(templates).format(
            n=rng.choice(NAMES),
            v=rng.choice(VERBS),
            o=rng.choice(OBJECTS),
            w=rng.choice(WHEN),
            p=rng.choice(PLACES),
        )
        + f" #{i}"
        for i in range(count)
    ]
