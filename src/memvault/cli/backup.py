"""``memvault backup`` and ``memvault restore`` (the work is ``memvault.core.backup``'s)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from memvault.errors import InvalidInput

__all__ = ["backup_command", "restore_command"]

console = Console()

_Home = Annotated[
    Path | None, typer.Option("--home", envvar="MEMVAULT_HOME", help="Data directory.")
]
_Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_Force = Annotated[
    bool, typer.Option("--force", help="Replace an existing backup (restore: the target store).")
]


def _print(lines: list[str]) -> None:
    for line in lines:
        console.print(escape(line), highlight=False)


def _describe(manifest: dict[str, Any]) -> list[str]:
    tables = ", ".join(f"{name} {count:,}" for name, count in manifest["tables"].items())
    files = ", ".join(manifest["files"])
    return [
        f"{manifest['kind']} backup  {manifest['directory']}",
        f"  files   {files} (0600, SHA-256 in {manifest['directory']}/manifest.json)",
        f"  schema  {manifest['schema_version'] or '(key store)'}",
        f"  rows    {tables}",
    ]


def backup_command(
    out: Annotated[Path, typer.Argument(help="A new (or empty) directory for the backup.")],
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys", help="Also back up the key store, into this other directory (after the data)."
        ),
    ] = None,
    keys_only: Annotated[
        bool, typer.Option("--keys-only", help="Back up the key store only, into OUT.")
    ] = False,
    force: _Force = False,
    as_json: _Json = False,
    home: _Home = None,
) -> None:
    """Snapshot the store while it keeps serving: the data into OUT, the keys apart (--keys or
    --keys-only). The data backup holds no key; keep the keys backup somewhere else."""
    from memvault.core.backup import backup
    from memvault.memory import Memory

    if keys_only and keys is not None:
        raise InvalidInput("--keys-only backs up the keys into OUT: leave out --keys")
    with Memory(home) as memory:
        done = backup(
            memory,
            None if keys_only else out,
            keys_out=out if keys_only else keys,
            force=force,
        )
    if as_json:
        console.print_json(json.dumps(done))
        return
    lines = [line for part in (done["data"], done["keys"]) if part for line in _describe(part)]
    if done["keys"] is None:
        lines.append("the key store is not in this backup: back it up apart (--keys-only)")
    _print(lines)


def restore_command(
    backup_dir: Annotated[Path, typer.Argument(help="A data backup directory.")],
    keys: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            help="A keys backup to restore too (a new machine); without it the rows are"
            " opened with the key store the target has.",
        ),
    ] = None,
    force: _Force = False,
    as_json: _Json = False,
    home: _Home = None,
) -> None:
    """Bring a backup back into an empty store (or, with --force, in place of it), after
    checking every file against its manifest. Rows whose data key the key store no longer
    holds (users erased since the backup) are deleted and counted. Stop servers first."""
    from memvault.config import Settings
    from memvault.core.backup import restore

    done = restore(Settings.load(home=home), backup_dir, keys_dir=keys, force=force)
    if as_json:
        console.print_json(json.dumps(done))
        return
    shredded = done["shredded"]
    _print(
        [
            f"restored  {done['restored_from']} (taken {done['backup_created_at']},"
            f" schema {done['schema_version']})",
            f"keys      {done['keys_from'] or 'the key store already in place'}",
            "rows      " + ", ".join(f"{t} {n:,}" for t, n in done["tables"].items()),
            f"shredded  {shredded['memories']:,} memories, {shredded['history_events']:,} history"
            f" events, {shredded['jobs']:,} jobs under {shredded['key_scopes']} data keys the key"
            " store no longer holds (erased since the backup)",
            f"verified  {done['verified_memories']} memories read back",
        ]
    )
