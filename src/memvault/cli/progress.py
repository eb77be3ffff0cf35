"""Live progress of long CLI commands, on stderr only: stdout stays the result (``--json``).

Commands whose total is known up front draw a bar (``bar``: ``memvault import``; ``memvault
migrate`` draws one per table); the ones that learn their size as they go (rotations, ``gc``)
show a spinner, what was done so far and the time elapsed, redrawn after each batch
(``counter``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["bar", "counter"]


@contextmanager
def bar(console: Console, what: str, total: int, *, show: bool) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``, which moves a bar of ``total`` steps on by ``n``. With ``show``
    false nothing is drawn and ``advance`` does nothing."""
    if not show:
        yield lambda _n: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def counter(console: Console, first: str, *, show: bool) -> Iterator[Callable[[str], None]]:
    """Yield ``say(text)``, which replaces the live line's text; ``first`` is shown at once.

    With ``show`` false (``--json``, or stderr not a terminal) nothing is drawn and ``say``
    does nothing, so callers need not branch. The last line stays on screen when done.
    """
    if not show:
        yield lambda _text: None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(first, total=None)

        def say(text: str) -> None:
            progress.update(task, description=text)

        yield say
