"""``memvault demo`` (what ``make run`` starts): a guided tour on the real embedded store."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from memvault.errors import MissingDependency
from memvault.memory import Memory

__all__ = ["run_demo"]

DEMO_NAMESPACE = "demo"
FACTS = {
    "alice": [
        "Alice is allergic to peanuts",
        "Alice prefers green tea over coffee",
        "Alice is training for the Berlin marathon in September",
        "Alice's daughter Mia starts school next year",
    ],
    "bob": [
        "Bob drinks three espressos a day",
        "Bob is learning to play the cello",
    ],
}
QUESTIONS = [
    ("alice", "what should I avoid cooking for her?"),
    ("alice", "what does she like to drink?"),
    ("bob", "what does he like to drink?"),
    ("alice", "upcoming race"),
]


def _open(home: Path | None, embedder: str | None, console: Console) -> Memory:
    try:
        return Memory(home, embedder=embedder, namespace=DEMO_NAMESPACE)
    except MissingDependency as exc:
        console.print(f"[yellow]{exc.message}; using the hash embedder instead[/yellow]")
        return Memory(home, embedder="hash", namespace=DEMO_NAMESPACE)


def run_demo(console: Console, home: Path | None, embedder: str | None) -> None:
    started = time.perf_counter()
    memory = _open(home, embedder, console)
    with memory:
        memory.reset()  # the demo namespace only: reruns start clean
        console.print(
            Panel.fit(
                f"[bold]memvault[/bold] demo - model [cyan]{memory.embedder.model_id}[/cyan], "
                f"loaded in {time.perf_counter() - started:.1f}s",
                border_style="cyan",
            )
        )
        items = [
            {"messages": text, "user_id": user} for user, texts in FACTS.items() for text in texts
        ]
        result = memory.add_many(items)
        console.print(f"stored {len(result['results'])} memories for alice and bob (encrypted)\n")
        for user, question in QUESTIONS:
            begin = time.perf_counter()
            hits = memory.search(question, user_id=user, top_k=2)["results"]
            took = (time.perf_counter() - begin) * 1000
            table = Table(title=f"{user}: {question!r}  ({took:.1f} ms)", title_justify="left")
            table.add_column("score", justify="right")
            table.add_column("memory")
            for hit in hits:
                table.add_row(f"{hit['score']:.2f}", hit["memory"])
            console.print(table)
        console.print("\nbob's searches never see alice's memories: scope is part of every query.")
        files = sorted(p for p in memory.home.iterdir() if p.is_file())
        console.print(f"\n[bold]Data lives in[/bold] {memory.home} (directory 0700, files 0600):")
        for path in files:
            console.print(f"  {path.name:24} {path.stat().st_size:>10,} bytes")
        console.print(
            "\nText, metadata, history and vectors are AES-256-GCM ciphertext under per-user keys"
            " (keys.db), wrapped by the master key (master.key or MEMVAULT_MASTER_KEY).\n"
        )
        console.print("[bold]Next[/bold]")
        console.print('  .venv/bin/memvault add "I love hiking" --user me')
        console.print('  .venv/bin/memvault search "outdoor hobbies" --user me')
        console.print("  python: from memvault import Memory")
        console.print('          Memory().search("hobbies", user_id="me")')
        console.print(
            f"  (the demo used namespace '{DEMO_NAMESPACE}'; your memories go to 'default')"
        )
