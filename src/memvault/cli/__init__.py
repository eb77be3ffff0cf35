"""The ``memvault`` command: the library's calls from a shell, ``--json`` for scripts.

It calls the same ``Memory`` API Python users call; errors leave through one exit path
(:func:`main`) with the error's stable code and exit status 2 for bad input (and usage
mistakes), 1 otherwise (and a declined confirmation, a file that cannot be opened, a broken
audit log). tests/e2e/test_cli_exit_codes.py checks each through the real process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from memvault.cli.backup import backup_command, restore_command
from memvault.errors import InvalidInput, MemvaultError

__all__ = ["app", "main"]

# Plain (click-style) help and errors: typer's rich help shows every flag as taking a value
# (``--json <bool>``) and boxes a usage error over several lines; plain help lists flags as
# flags and a usage error is the usage, a hint and one ``Error:`` line.
_HELP_MARKUP = None


def _group(help_text: str) -> typer.Typer:
    """A command group with the same help style as the top level."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=_HELP_MARKUP)


app = typer.Typer(
    name="memvault",
    help="Encrypted long-term memory for AI agents.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
    pretty_exceptions_enable=False,
    rich_markup_mode=_HELP_MARKUP,
)
console = Console()
errors = Console(stderr=True)


def _print_version(wanted: bool) -> None:
    if wanted:
        from memvault import __version__

        console.print(f"memvault {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _top_level(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Encrypted long-term memory for AI agents."""


HomeOption = Annotated[
    Path | None, typer.Option("--home", envvar="MEMVAULT_HOME", help="Data directory.")
]
EmbedderOption = Annotated[
    str | None,
    typer.Option("--embedder", envvar="MEMVAULT_EMBEDDER", help="local | hash | openai"),
]
NamespaceOption = Annotated[
    str | None, typer.Option("--namespace", envvar="MEMVAULT_NAMESPACE", help="Tenant.")
]
UserOption = Annotated[str | None, typer.Option("--user", "-u", help="user_id scope.")]
AgentOption = Annotated[str | None, typer.Option("--agent", help="agent_id scope.")]
RunOption = Annotated[str | None, typer.Option("--run", help="run_id scope.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@contextmanager
def _memory(home: Path | None, embedder: str | None, namespace: str | None) -> Iterator[Any]:
    from memvault.memory import Memory

    with Memory(home, embedder=embedder, namespace=namespace) as memory:
        yield memory


def _json_arg(name: str, raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidInput(f"--{name} must be JSON") from None


def _live(as_json: bool) -> bool:
    """Whether to draw live progress: on a terminal's stderr, and never with --json."""
    return not as_json and errors.is_terminal


def _emit(data: Any, as_json: bool, render: Any = None) -> None:
    if as_json or render is None:
        console.print_json(json.dumps(data, ensure_ascii=False))
    else:
        render(data)


def _table(rows: list[dict[str, Any]], score: bool = False) -> None:
    if not rows:
        console.print("[dim]no memories[/dim]")
        return
    table = Table(show_lines=False)
    table.add_column("id", style="dim", no_wrap=True)
    if score:
        table.add_column("score", justify="right")
    table.add_column("memory")
    table.add_column("scope", style="cyan")
    table.add_column("created", style="dim")
    for row in rows:
        scope = " ".join(
            f"{k[:-3]}={row[k]}" for k in ("user_id", "agent_id", "run_id") if row.get(k)
        )
        cells = [row["id"]]
        if score:
            cells.append(f"{row['score']:.3f}")
        cells += [escape(row["memory"]), escape(scope), row["created_at"][:19]]
        table.add_row(*cells)
    console.print(table)


@app.command()
def add(
    text: Annotated[str, typer.Argument(help="The memory's text.")],
    user: UserOption = None,
    agent: AgentOption = None,
    run: RunOption = None,
    metadata: Annotated[str | None, typer.Option(help="JSON object.")] = None,
    memory_type: Annotated[str | None, typer.Option(help="semantic|episodic|procedural")] = None,
    expires: Annotated[str | None, typer.Option(help="ISO 8601 expiry.")] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Store a memory."""
    with _memory(home, embedder, namespace) as memory:
        result = memory.add(
            text,
            user_id=user,
            agent_id=agent,
            run_id=run,
            metadata=_json_arg("metadata", metadata),
            memory_type=memory_type,
            expiration_date=expires,
        )

    def render(data: dict[str, list[dict[str, Any]]]) -> None:
        for item in data["results"]:
            console.print(f"{item['event']} {item['id']}")

    _emit(result, as_json, render)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    user: UserOption = None,
    agent: AgentOption = None,
    run: RunOption = None,
    filters: Annotated[str | None, typer.Option(help="mem0 filter, JSON.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 10,
    threshold: Annotated[
        float | None, typer.Option(help="Minimum score (relevance in [0, 1]) of a hit.")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show the vector and BM25 parts.")
    ] = False,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Find memories by meaning and by words."""
    with _memory(home, embedder, namespace) as memory:
        result = memory.search(
            query,
            user_id=user,
            agent_id=agent,
            run_id=run,
            filters=_json_arg("filters", filters),
            top_k=top_k,
            threshold=threshold,
            explain=explain,
        )
    _emit(result, as_json, lambda r: _table(r["results"], score=True))


@app.command("list")
def list_memories(
    user: UserOption = None,
    agent: AgentOption = None,
    run: RunOption = None,
    filters: Annotated[str | None, typer.Option(help="mem0 filter, JSON.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 100,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """List a scope's memories, newest first."""
    with _memory(home, embedder, namespace) as memory:
        result = memory.get_all(
            user_id=user,
            agent_id=agent,
            run_id=run,
            filters=_json_arg("filters", filters),
            top_k=limit,
        )
    _emit(result, as_json, lambda r: _table(r["results"]))


@app.command()
def get(
    memory_id: str,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Show one memory."""
    from memvault.errors import NotFound

    with _memory(home, embedder, namespace) as memory:
        found = memory.get(memory_id)
    if found is None:
        raise NotFound(f"no memory {memory_id}")
    _emit(found, as_json)


@app.command()
def update(
    memory_id: str,
    text: Annotated[str | None, typer.Argument(help="New text.")] = None,
    metadata: Annotated[str | None, typer.Option(help="New metadata, JSON object.")] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Change a memory's text or metadata (the old text stays in its history)."""
    with _memory(home, embedder, namespace) as memory:
        result = memory.update(memory_id, text, _json_arg("metadata", metadata))
    _emit(result, as_json, lambda r: console.print(f"UPDATE {r['result']['id']}"))


@app.command()
def delete(
    memory_id: Annotated[str | None, typer.Argument(help="The memory to delete.")] = None,
    all_of_scope: Annotated[
        bool, typer.Option("--all", help="Delete every memory of --user/--agent/--run.")
    ] = False,
    user: UserOption = None,
    agent: AgentOption = None,
    run: RunOption = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Delete one memory, or with --all every memory of a scope."""
    with _memory(home, embedder, namespace) as memory:
        if all_of_scope:
            if memory_id is not None:
                raise InvalidInput("give a memory id or --all with a scope, not both")
            result: dict[str, Any] = memory.delete_all(user_id=user, agent_id=agent, run_id=run)
        elif memory_id is None:
            raise InvalidInput("give a memory id, or --all with --user/--agent/--run")
        else:
            result = memory.delete(memory_id)
    _emit(result, as_json, lambda r: console.print(r["message"]))


@app.command()
def related(
    memory_id: str,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 10,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """The memories that name the same people, places or things as a memory, best first."""
    with _memory(home, embedder, namespace) as memory:
        result = memory.related(memory_id, limit=limit)
    _emit(result, as_json, lambda r: _table(r["results"], score=True))


@app.command()
def history(
    memory_id: str,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Every change to a memory, oldest first."""
    from memvault.errors import NotFound

    with _memory(home, embedder, namespace) as memory:
        events = memory.history(memory_id)
    if not events:  # a memory keeps its history, even deleted: none means no such memory
        raise NotFound(f"no memory {memory_id}")

    def render(rows: list[dict[str, Any]]) -> None:
        table = Table()
        for column in ("event", "old_memory", "new_memory", "created_at"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["event"],
                row["old_memory"] or "",
                row["new_memory"] or "",
                row["created_at"][:19],
            )
        console.print(table)

    _emit(events, as_json, render)


@app.command("import")
def import_file(
    path: Annotated[
        Path,
        typer.Argument(
            help="JSONL of add() items, a memvault export, a mem0 get_all dump or platform"
            " export, mem0's history.db (with --qdrant), or OpenMemory's SQLite file.",
            exists=True,
            dir_okay=False,
        ),
    ],
    qdrant: Annotated[
        Path,
        typer.Option(
            "--qdrant",
            help="mem0 local storage: the Qdrant path of its vector_store config.",
            file_okay=False,
        ),
    ] = Path("/tmp/qdrant"),  # noqa: S108  (mem0's own default, read only)
    collection: Annotated[
        str, typer.Option("--collection", help="mem0 local storage: the Qdrant collection.")
    ] = "mem0",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and count everything, store nothing.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 256,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Bulk load memories, with a progress bar, then verify them (counts, and a sample read
    back and compared with the source). Reads JSONL of add() items ({"messages": "...",
    "user_id": "..."}; "memory" or "text" may stand for messages), a memvault export, mem0's
    dumps, mem0's local storage (history.db and its Qdrant path) and OpenMemory's SQLite file.
    Every record is checked before the first is stored. Run it again after an interruption:
    what is stored already is skipped."""
    from memvault.cli.importer import import_records, json_records
    from memvault.cli.progress import bar
    from memvault.cli.sources import is_sqlite, read_mem0_local, read_openmemory, sqlite_kind

    orphans = 0
    if is_sqlite(path):
        kind = sqlite_kind(path)
        if kind == "openmemory":
            records = read_openmemory(path)
        else:
            records, orphans = read_mem0_local(path, qdrant, collection)
    else:
        kind, records = "json", json_records(path)
    with (
        _memory(home, embedder, namespace) as memory,
        bar(errors, "importing", len(records), show=_live(as_json) and not dry_run) as advance,
    ):
        summary = import_records(
            memory,
            records,
            kind=kind,
            dry_run=dry_run,
            batch_size=batch_size,
            advance=advance,
            orphans=orphans,
        )

    def render(s: dict[str, Any]) -> None:
        if s["dry_run"]:
            console.print(
                f"dry run ({s['format']}): {s['records']} records checked, would import"
                f" {s['memories']} memories and {s['deleted']} deleted memories' histories"
                f" ({s['history_events']} history events); {s['already_there']} already"
                " imported; nothing stored",
                highlight=False,
            )
        else:
            console.print(
                f"imported {s['added']} memories, {s['duplicates']} duplicates skipped,"
                f" {s['deleted']} deleted memories' histories, {s['already_there']} already"
                f" there; verified: counts, {s['verified']} sampled memories read back equal",
                highlight=False,
            )
        if s["orphans"]:
            console.print(
                f"not imported: the history of {s['orphans']} memories mem0 deleted (it names"
                " no user, agent or run)",
                highlight=False,
            )

    _emit(summary, as_json, render)


keys_app = _group("API keys of the REST server (work while it runs).")
app.add_typer(keys_app, name="keys")


def _keys(home: Path | None, namespace: str | None) -> Any:
    from memvault.memory import Memory

    # Keys need no embedding model, and Memory loads it only on first use.
    return Memory(home, namespace=namespace)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin | write | read")],
    user: Annotated[str | None, typer.Option("--user", help="Bind the key to one user_id.")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    expires_in: Annotated[
        float | None, typer.Option("--expires-in", help="Days until it expires.")
    ] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Create a key; it is printed once and only its keyed hash is stored."""
    with _keys(home, namespace) as memory:
        made = memory.api_keys.create(
            memory.namespace, role, name=name, user_id=user, expires_in_days=expires_in
        )
    if as_json:
        console.print_json(json.dumps({"id": made.info.id, "key": made.key, **made.info.public()}))
    else:
        console.print(f"[green]{made.key}[/green]")
        errors.print(
            f"key {made.info.id} ({made.info.role}) in namespace {made.info.namespace}:"
            " store it now, it is not shown again"
        )


@keys_app.command("list")
def keys_list(
    as_json: JsonOption = False,
    all_namespaces: Annotated[bool, typer.Option("--all", help="Every namespace.")] = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """List keys (never their secrets)."""
    with _keys(home, namespace) as memory:
        keys = [
            k.public() for k in memory.api_keys.list(None if all_namespaces else memory.namespace)
        ]

    def render(rows: list[dict[str, Any]]) -> None:
        table = Table()
        for column in (
            "id",
            "namespace",
            "role",
            "user_id",
            "name",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ):
            table.add_column(column)
        for row in rows:
            table.add_row(
                *[
                    str(row[c] or "")
                    for c in (
                        "id",
                        "namespace",
                        "role",
                        "user_id",
                        "name",
                        "expires_at",
                        "revoked_at",
                        "last_used_at",
                    )
                ]
            )
        console.print(table)

    _emit(keys, as_json, render)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Revoke a key at once (also for a running server)."""
    with _keys(home, namespace) as memory:
        info = memory.api_keys.revoke(key_id, memory.namespace).public()
    _emit(info, as_json, lambda i: console.print(f"revoked {i['id']}"))


user_app = _group("A user's data: export and erase (GDPR).")
app.add_typer(user_app, name="user")


@user_app.command("export")
def user_export(
    user_id: str,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default stdout).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Every memory of a user, with metadata and history, as JSON lines."""
    from memvault.cli.files import write_jsonl

    with _keys(home, namespace) as memory:
        lines = memory.export_user(user_id)
        if out is None:
            for line in lines:
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
            return
        count = write_jsonl(out, lines, force=force)
    errors.print(f"exported {count} memories of {user_id} to {out}", highlight=False)


@user_app.command("erase")
def user_erase(
    user_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Erase a user: destroy their data key, then delete their memories and history."""
    from memvault.security.audit import AuditEntry
    from memvault.validation import check_id

    user_id = check_id("user_id", user_id)  # before it is shown, asked about or audited
    if not yes and not typer.confirm(f"Erase every memory of {user_id}? This cannot be undone"):
        raise typer.Abort()

    with _keys(home, namespace) as memory:
        entry = {"action": "cli user erase", "namespace": memory.namespace, "user_id": user_id}
        try:
            result = memory.erase_user(user_id)
        except MemvaultError as exc:
            memory.audit.append([AuditEntry(outcome=exc.code, source="cli", **entry)])
            raise
        memory.audit.append([AuditEntry(outcome="ok", source="cli", **entry)])
    _emit(
        result,
        as_json,
        lambda r: console.print(
            f"erased {r['user_id']}: {r['memories_deleted']} memories,"
            f" {r['history_deleted']} history events"
        ),
    )


namespace_app = _group("A namespace's rules: secret policy, default TTL.")
app.add_typer(namespace_app, name="namespace")


@namespace_app.command("show")
def namespace_show(
    as_json: JsonOption = False, home: HomeOption = None, namespace: NamespaceOption = None
) -> None:
    """Show the namespace's secret policy and default TTL."""
    with _keys(home, namespace) as memory:
        rules = {"namespace": memory.namespace, **memory.namespace_settings()}
    _emit(rules, as_json)


@namespace_app.command("set")
def namespace_set(
    secret_policy: Annotated[str | None, typer.Option(help="redact | reject | allow")] = None,
    default_ttl_days: Annotated[
        float | None, typer.Option(help="Expiry of new memories, in days.")
    ] = None,
    no_default_ttl: Annotated[
        bool, typer.Option("--no-default-ttl", help="New memories never expire by default.")
    ] = False,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Change the namespace's secret policy and/or default TTL."""
    ttl: float | bool | None = False
    if no_default_ttl:
        ttl = None
    elif default_ttl_days is not None:
        ttl = default_ttl_days * 86400
    with _keys(home, namespace) as memory:
        rules = {
            "namespace": memory.namespace,
            **memory.configure_namespace(secret_policy=secret_policy, default_ttl_seconds=ttl),
        }
    _emit(rules, as_json)


jobs_app = _group("The job queue of infer=True adds: status, results, retry of dead jobs.")
app.add_typer(jobs_app, name="jobs")


def _job_table(jobs: list[dict[str, Any]]) -> None:
    if not jobs:
        console.print("[dim]no jobs[/dim]")
        return
    table = Table(show_lines=False)
    for column in ("id", "status", "attempts", "error", "scope", "updated"):
        table.add_column(column, style="dim" if column in ("id", "updated") else None)
    for job in jobs:
        scope = " ".join(
            f"{k[:-3]}={job[k]}" for k in ("user_id", "agent_id", "run_id") if job.get(k)
        )
        table.add_row(
            job["id"],
            job["status"],
            f"{job['attempts']}/{job['max_attempts']}",
            job["error_code"] or "",
            scope,
            job["updated_at"][:19],
        )
    console.print(table)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        str | None, typer.Option(help="queued | running | done | failed | dead")
    ] = None,
    user: UserOption = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """The namespace's jobs, newest first."""
    with _keys(home, namespace) as memory:
        found = memory.jobs(status=status, user_id=user, limit=limit)
    _emit(found, as_json, lambda data: _job_table(data["results"]))


@jobs_app.command("show")
def jobs_show(
    job_id: str,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """One job: status, attempts, last error code and, once done, its result."""
    with _keys(home, namespace) as memory:
        job = memory.job(job_id)
    _emit(job, as_json)


@jobs_app.command("retry")
def jobs_retry(
    job_id: str,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Queue a dead job again (its attempts reset); a running server's workers take it."""
    with _keys(home, namespace) as memory:
        job = memory.retry_job(job_id)
    _emit(job, as_json, lambda data: console.print(f"job {data['id']} is {data['status']}"))


@jobs_app.command("work")
def jobs_work(
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=256, help="Worker threads (default MEMVAULT_JOB_WORKERS, or 2 if that is 0)."
        ),
    ] = None,
    grace: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds running jobs get to finish on stop.")
    ] = 10.0,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
) -> None:
    """Run the queue's workers and the webhook senders in this process until Ctrl-C or SIGTERM
    (beside servers started with MEMVAULT_JOB_WORKERS=0 and MEMVAULT_WEBHOOK_WORKERS=0, so
    inference and delivery never share their CPU); every namespace's jobs and events."""
    from memvault.cli.worker import work_until_stopped

    with _memory(home, embedder, None) as memory:
        work_until_stopped(memory, workers, grace, console)


audit_app = _group("The tamper-evident audit log.")
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(as_json: JsonOption = False, home: HomeOption = None) -> None:
    """Check the whole hash chain; exit 1 at the first edited, removed or moved entry."""
    with _keys(home, None) as memory:
        result = memory.audit.verify()
    data = {
        "ok": result.ok,
        "entries": result.entries,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }
    _emit(
        data,
        as_json,
        lambda d: console.print(
            f"audit log intact: {d['entries']} entries"
            if d["ok"]
            else f"[red]audit log broken at entry {d['first_bad_seq']}: {d['problem']}[/red]"
        ),
    )
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10000)] = 50,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
    all_namespaces: Annotated[bool, typer.Option("--all", help="Every namespace.")] = False,
) -> None:
    """The newest audit entries."""
    with _keys(home, namespace) as memory:
        rows = memory.audit.entries(None if all_namespaces else memory.namespace, limit=limit)

    def render(entries: list[dict[str, Any]]) -> None:
        table = Table()
        for column in ("seq", "at", "namespace", "key_id", "action", "user_id", "outcome"):
            table.add_column(column)
        for e in entries:
            table.add_row(
                *[
                    str(e[c] or "")
                    for c in ("seq", "at", "namespace", "key_id", "action", "user_id", "outcome")
                ]
            )
        console.print(table)

    _emit(rows, as_json, render)


@user_app.command("rotate-key")
def user_rotate_key(
    user_id: str,
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Re-encrypt a user's memories, history and jobs under a new data key (online, in
    batches)."""
    from memvault.security.audit import AuditEntry
    from memvault.validation import check_id

    user_id = check_id("user_id", user_id)

    from memvault.cli.progress import counter
    from memvault.core import rekey

    with (
        _keys(home, namespace) as memory,
        counter(errors, f"re-encrypting {user_id}", show=_live(as_json)) as say,
    ):
        # Through the core, for its progress hook (Memory.rotate_user_key is the same call).
        result = rekey.rotate_user_key(
            memory.engine,
            user_id,
            on_progress=lambda done, events: say(
                f"re-encrypting {user_id}: {done:,} memories, {events:,} history events done"
            ),
        )
        memory.audit.append(
            [
                AuditEntry(
                    action="cli user rotate-key",
                    outcome="ok",
                    source="cli",
                    namespace=memory.namespace,
                    user_id=user_id,
                )
            ]
        )
    _emit(
        result,
        as_json,
        lambda r: console.print(
            f"{r['user_id']}: {r['memories_rekeyed']} memories and {r['jobs_rekeyed']} jobs"
            f" re-encrypted under {r['key_scope']}"
        ),
    )


entities_app = _group("Entity links: what a scope's memories name, and the rebuild of old ones.")
app.add_typer(entities_app, name="entities")


@entities_app.command("list")
def entities_list(
    user: UserOption = None,
    agent: AgentOption = None,
    run: RunOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 100,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """The people, places, things, dates and titles a scope's memories name, most named first."""
    with _memory(home, embedder, namespace) as memory:
        result = memory.entities(user_id=user, agent_id=agent, run_id=run, limit=limit)

    def render(data: dict[str, list[dict[str, Any]]]) -> None:
        table = Table()
        table.add_column("entity")
        table.add_column("memories", justify="right")
        for row in data["results"]:
            table.add_row(escape(row["name"]), str(row["memories"]))
        console.print(table)

    _emit(result, as_json, render)


@entities_app.command("rebuild")
def entities_rebuild(
    as_json: JsonOption = False,
    home: HomeOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Extract and store the entities of every memory that has none recorded yet (memories
    written before this version): online, a batch per transaction; a no-op once done."""
    from memvault.cli.progress import bar

    with _keys(home, namespace) as memory:
        total = memory.engine.store.count_without_entities(memory.namespace)
        shown = [0]

        with bar(errors, "extracting entities", total, show=_live(as_json)) as advance:

            def moved(done: int) -> None:
                advance(done - shown[0])
                shown[0] = done

            result = memory.rebuild_entities(on_progress=moved)
    _emit(
        result,
        as_json,
        lambda r: console.print(
            f"{r['namespace']}: entities extracted for {r['memories']} memories"
            + (f" ({r['skipped']} skipped)" if r["skipped"] else "")
        ),
    )


@app.command()
def gc(
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Delete expired memories now (a running server does it every hour)."""
    from memvault.cli.progress import counter
    from memvault.core import rights

    with (
        _keys(home, None) as memory,
        counter(errors, "purging expired memories", show=_live(as_json)) as say,
    ):
        # Through the core, for its progress hook (Memory.purge_expired is the same call).
        purged = rights.purge_expired(
            memory.engine, on_progress=lambda done: say(f"purging expired memories: {done:,} done")
        )
    _emit(
        {"purged": purged},
        as_json,
        lambda r: console.print(f"purged {r['purged']} expired memories"),
    )


@keys_app.command("rotate-master")
def keys_rotate_master(
    retire_old: Annotated[
        bool, typer.Option("--retire-old", help="Then forget the old master key versions.")
    ] = False,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Rewrap every data key under a new master key version (servers keep running)."""
    from memvault.cli.progress import counter
    from memvault.core import rekey
    from memvault.security.audit import AuditEntry

    with (
        _keys(home, None) as memory,
        counter(errors, "rewrapping data keys", show=_live(as_json)) as say,
    ):
        # Through the core, for its progress hook (Memory.rotate_master_key is the same call).
        result = rekey.rotate_master_key(
            memory.engine.keyring,
            retire_old=retire_old,
            on_progress=lambda done: say(f"rewrapping data keys: {done:,} done"),
        )
        memory.audit.append(
            [AuditEntry(action="cli keys rotate-master", outcome="ok", source="cli")]
        )
    _emit(
        result,
        as_json,
        lambda r: console.print(
            f"master key version {r['current_version']}: {r['rewrapped']} data keys rewrapped"
            + (f", retired {r['retired']}" if r["retired"] else "")
        ),
    )


db_app = _group("The database behind the store.")
app.add_typer(db_app, name="db")


@db_app.command("status")
def db_status(as_json: JsonOption = False, home: HomeOption = None) -> None:
    """Backend, location (password masked), schema version, migrations, counts and size."""
    with _keys(home, None) as memory:
        store = memory.store_status()
        keys = memory.key_store_status()
    data = {
        "backend": store.backend,
        "location": store.location,
        "schema_version": store.schema_version,
        "migrations": list(store.migrations),
        "memories": store.memories,
        "history_events": store.history_events,
        "bytes_used": store.bytes_used,
        "key_store": {
            "location": keys.location,
            "data_keys": keys.data_keys,
            "master_key_versions": keys.master_key_versions,
        },
    }

    def render(d: dict[str, Any]) -> None:
        size = "unknown" if d["bytes_used"] is None else f"{d['bytes_used']:,} bytes"
        lines = [
            f"backend         {d['backend']}",
            f"location        {d['location']}",
            f"schema version  {d['schema_version'] or '(none)'}",
            f"migrations      {', '.join(d['migrations']) or '(none)'}",
            f"memories        {d['memories']:,}",
            f"history events  {d['history_events']:,}",
            f"bytes used      {size}",
            f"key store       {d['key_store']['location']}",
            f"data keys       {d['key_store']['data_keys']:,}"
            f" (master key versions: {d['key_store']['master_key_versions']})",
        ]
        for line in lines:
            console.print(escape(line), highlight=False)

    _emit(data, as_json, render)


class _Bars:
    """A rich progress bar per table, on stderr."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}

    def start(self, table: str, total: int) -> None:
        self._tasks[table] = self._progress.add_task(table, total=total)

    def advance(self, table: str, rows: int) -> None:
        self._progress.advance(self._tasks[table], rows)


@app.command()
def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Where to copy the store: postgresql://user:password@host/db, or sqlite:PATH"
            " (a home directory).",
        ),
    ],
    to_keys: Annotated[
        str | None,
        typer.Option(
            "--to-keys",
            help="Postgres target only: a separate database for its key store.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10000, help="Rows per batch.")] = 500,
    sample: Annotated[
        int, typer.Option(min=0, max=10000, help="Memories re-read on both sides at the end.")
    ] = 50,
    fail_after_batches: Annotated[int | None, typer.Option(hidden=True)] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
) -> None:
    """Copy the whole store (every namespace, its keys, API keys and audit log) to another
    backend, then verify the copy. The source is what MEMVAULT_DATABASE_URL / --home select.

    Run it with writers stopped (servers, MCP, scripts). It is resumable: after an interruption,
    run it again and it copies what is missing (nothing is doubled); new rows written to the
    source since are picked up the same way. A target that holds another store is refused."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from memvault.core.transfer import migrate_store, parse_target

    target = parse_target(to, to_keys)
    show = _live(as_json)
    with _keys(home, None) as memory:
        if show:
            columns = (
                "{task.description:<18}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=errors, transient=False) as progress:
                summary = migrate_store(
                    memory,
                    target,
                    batch_size=batch_size,
                    sample_size=sample,
                    reporter=_Bars(progress),
                    fail_after_batches=fail_after_batches,
                )
        else:
            summary = migrate_store(
                memory,
                target,
                batch_size=batch_size,
                sample_size=sample,
                fail_after_batches=fail_after_batches,
            )

    def render(s: dict[str, Any]) -> None:
        table = Table(title=f"{escape(s['source'])} -> {escape(s['target'])}")
        for column in ("table", "rows", "copied now", "already there"):
            table.add_column(column, justify="left" if column == "table" else "right")
        for name, counts in s["tables"].items():
            table.add_row(
                name, str(counts["target"]), str(counts["copied"]), str(counts["already_there"])
            )
        console.print(table)
        console.print(
            f"verified: row counts equal, {s['verified_memories']} sampled memories and"
            f" {s['verified_jobs']} jobs read the same on both sides ({s['seconds']:.1f} s)",
            highlight=False,
        )

    _emit(summary, as_json, render)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(envvar="MEMVAULT_HOST", help="Address (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(envvar="MEMVAULT_PORT", help="Port (default 8765).")
    ] = None,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
) -> None:
    """Run the REST server; on the very first start it prints an admin key once."""
    from memvault.config import Settings

    try:
        from memvault.server import serve as run_server
    except ImportError as exc:
        from memvault.errors import MissingDependency

        raise MissingDependency("the server needs: pip install 'memvault[server]'") from exc
    run_server(Settings.load(home=home, embedder=embedder, host=host, port=port), console)


@app.command()
def mcp(
    user: Annotated[
        str | None, typer.Option("--user", "-u", envvar="MEMVAULT_USER_ID", help="Whose memories.")
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", envvar="MEMVAULT_AGENT_ID", help="Default agent_id.")
    ] = None,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Serve the memory tools over MCP stdio (for Claude Desktop, Cursor, ...), for one user."""
    from memvault.errors import InvalidInput, MissingDependency
    from memvault.validation import check_id

    if user is None:
        raise InvalidInput(
            "memvault mcp needs --user (or MEMVAULT_USER_ID): whose memories to serve"
        )
    user = check_id("user_id", user)
    try:
        from memvault.mcp.stdio import serve_stdio
    except ImportError as exc:
        raise MissingDependency("the MCP server needs: pip install 'memvault[mcp]'") from exc
    serve_stdio(home=home, embedder=embedder, namespace=namespace, user_id=user, agent_id=agent)


@app.command()
def doctor(
    url: Annotated[
        str | None,
        typer.Option("--url", help="Also check a running server (http://HOST:PORT)."),
    ] = None,
    as_json: JsonOption = False,
    home: HomeOption = None,
    embedder: EmbedderOption = None,
) -> None:
    """Check this setup and say how to fix each problem; exit 1 when one is found.

    Home and file permissions, the master key's source, the key store, the schema version, the
    embedding model's files and, with --url, a running server. Only reads: creates nothing."""
    from memvault.cli.doctor import Finding, diagnose
    from memvault.config import Settings
    from memvault.errors import InvalidConfig

    try:
        findings = diagnose(Settings.load(home=home, embedder=embedder), url=url)
    except InvalidConfig as exc:  # the settings themselves: nothing else can be checked
        fix = "correct the MEMVAULT_* variable or the memvault.toml entry it names"
        findings = [Finding("settings", "problem", exc.message, fix)]
    healthy = all(finding.status != "problem" for finding in findings)

    def render(data: dict[str, Any]) -> None:
        style = {"ok": "green", "problem": "bold red", "skipped": "dim"}
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column()
        for item in data["checks"]:
            finding = escape(item["detail"])
            if item["fix"]:
                finding += f"\n[yellow]fix:[/yellow] {escape(item['fix'])}"
            table.add_row(f"[{style[item['status']]}]{item['status']}[/]", item["check"], finding)
        console.print(table, highlight=False)
        problems = sum(item["status"] == "problem" for item in data["checks"])
        console.print(
            "all checks passed" if data["ok"] else f"[red]{problems} problem(s) found[/red]"
        )

    _emit({"ok": healthy, "checks": [f.public() for f in findings]}, as_json, render)
    if not healthy:
        raise typer.Exit(1)


@app.command()
def demo(
    home: HomeOption = None,
    embedder: EmbedderOption = None,
) -> None:
    """A short guided tour: store a few memories, search them, show where the data lives."""
    from memvault.cli.demo import run_demo

    run_demo(console, home, embedder)


app.command("backup")(backup_command)
app.command("restore")(restore_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every way out of the command ends in one message and the right exit status.

    typer runs in standalone mode, so it handles what belongs to it with its own classes (its
    bundled click's, whatever the installed version): usage mistakes print the usage and exit 2,
    ``typer.Exit(code)`` exits with ``code``, a declined confirmation (``typer.Abort``) prints
    "Aborted" and exits 1, Ctrl-C exits 130. What is left is ours: a ``MemvaultError`` prints its
    code and message and exits 2 for bad input, 1 otherwise; a file the command cannot open or
    create (``OSError``) prints the reason and exits 1. No path prints a traceback on purpose.
    """
    try:
        app(args=argv, prog_name="memvault", standalone_mode=True)
    except MemvaultError as exc:
        # One line however long (a path, a URL): soft_wrap keeps rich from breaking it at 80
        # columns when stderr is not a terminal, so scripts and greps see it whole.
        errors.print(
            f"[red]error[/red] {escape(f'[{exc.code}]')} {escape(exc.message)}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2 if isinstance(exc, InvalidInput) else 1)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        reason = exc.strerror or type(exc).__name__
        errors.print(
            f"[red]error[/red] {escape('[os_error] ' + reason + where)}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
