"""The suite's report: PNG plots (matplotlib) and a markdown summary with the targets checked.

.venv/bin/python bench/report.py bench/results/<date>-<machine>.json   # redraw from a JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import ScalarFormatter

from corpus import table_head
from locomo_data import KS, MODES


def _sizes(result: dict[str, Any]) -> list[int]:
    return [run["memories"] for run in result["scale"]]


def _mem0_by_size(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {run["memories"]: run for run in result.get("mem0", {}).get("scale", [])}


def _axes_log(ax: Any, sizes: list[int], ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.set_xlabel("memories stored")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def plot_load(result: dict[str, Any], folder: Path) -> str:
    sizes = _sizes(result)
    fig, ax = plt.subplots(figsize=(6, 4))
    load = [r["in_process"]["bulk_load"]["memories_per_second"] for r in result["scale"]]
    raw = [r["in_process"]["bulk_load"]["raw_embed_per_second"] for r in result["scale"]]
    ax.plot(sizes, load, "o-", label="memvault add_many")
    ax.plot(sizes, raw, "s--", label="the model alone (raw batch embedding)")
    mem0 = _mem0_by_size(result)
    if mem0:
        xs = sorted(mem0)
        ax.plot(xs, [mem0[s]["add_per_second"] for s in xs], "^-", label="mem0 add (one by one)")
    _axes_log(ax, sizes, "memories per second")
    ax.set_ylim(bottom=0)
    ax.set_title("Bulk load rate")
    ax.legend()
    return _save(fig, folder, "load.png")


def plot_latency(result: dict[str, Any], folder: Path) -> str:
    sizes = _sizes(result)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    series: list[tuple[str, list[Any]]] = [
        (
            "in process, large user",
            [r["in_process"]["search_ms"]["large_user"] for r in result["scale"]],
        ),
        (
            "in process, small users",
            [r["in_process"]["search_ms"]["small_users"] for r in result["scale"]],
        ),
        ("in process, one user holds all", [r["one_user"]["search_ms"] for r in result["scale"]]),
    ]
    if all("rest" in r for r in result["scale"]):
        series += [
            ("REST, large user", [r["rest"]["search_ms"]["large_user"] for r in result["scale"]]),
            ("REST, small users", [r["rest"]["search_ms"]["small_users"] for r in result["scale"]]),
            ("MCP, large user", [r["rest"]["mcp_search_ms"] for r in result["scale"]]),
        ]
    for ax, quantile in zip(axes, ("p50", "p95", "p99"), strict=True):
        for label, values in series:
            ax.plot(sizes, [v[quantile] for v in values], "o-", label=label)
        mem0 = _mem0_by_size(result)
        if mem0:
            xs = sorted(mem0)
            ax.plot(
                xs,
                [mem0[s]["search_ms"]["large_user"][quantile] for s in xs],
                "^--",
                label="mem0, large user",
            )
        _axes_log(ax, sizes, f"search latency {quantile}, ms")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.set_title(f"Search {quantile}")
    axes[0].legend(fontsize=7)
    return _save(fig, folder, "search_latency.png")


def plot_add(result: dict[str, Any], folder: Path) -> str:
    sizes = _sizes(result)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pick in (
        ("in process p50", lambda r: r["in_process"]["add_ms"]["p50"]),
        ("in process p95", lambda r: r["in_process"]["add_ms"]["p95"]),
        ("REST p50", lambda r: r["rest"]["add_ms"]["p50"]),
        ("REST p95", lambda r: r["rest"]["add_ms"]["p95"]),
    ):
        try:
            ax.plot(sizes, [pick(r) for r in result["scale"]], "o-", label=label)
        except KeyError:
            continue
    _axes_log(ax, sizes, "ms")
    ax.set_ylim(bottom=0)
    ax.set_title("Single add latency (one memory, durable commit)")
    ax.legend()
    return _save(fig, folder, "add_latency.png")


def plot_throughput(result: dict[str, Any], folder: Path) -> str | None:
    if not all("rest" in r for r in result["scale"]):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for run in result["scale"]:
        rows = run["rest"]["throughput"]
        clients = [row["clients"] for row in rows]
        axes[0].plot(
            clients,
            [row["searches_per_second"] for row in rows],
            "o-",
            label=f"{run['memories']:,}",
        )
        axes[1].plot(
            clients, [row["latency_ms"]["p50"] for row in rows], "o-", label=f"{run['memories']:,}"
        )
    for ax, label in zip(axes, ("searches per second", "latency p50, ms"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(c) for c in clients])
        ax.set_xlabel("concurrent REST clients (large user's scope)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(title="memories")
    axes[0].set_title("Throughput")
    axes[1].set_title("Latency under load")
    return _save(fig, folder, "throughput.png")


def plot_footprint(result: dict[str, Any], folder: Path) -> str:
    sizes = _sizes(result)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    disk = [r["in_process"]["disk_bytes"] / 2**20 for r in result["scale"]]
    axes[0].plot(sizes, disk, "o-", label="data directory (MB)")
    if all("rest" in r for r in result["scale"]):
        axes[0].plot(
            sizes,
            [r["rest"]["server_memory"]["rss_mb"] for r in result["scale"]],
            "s-",
            label="server RSS after the run (MB)",
        )
    axes[0].plot(
        sizes,
        [r["cold_start"]["peak_rss_mb"] for r in result["scale"]],
        "^-",
        label="cold `memvault search` peak RSS (MB)",
    )
    _axes_log(axes[0], sizes, "MB")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title("Memory and disk")
    axes[0].legend(fontsize=8)
    axes[1].plot(
        sizes,
        [r["cold_start"]["seconds"] for r in result["scale"]],
        "o-",
        label="many users (large user's scope)",
    )
    axes[1].plot(
        sizes,
        [r["one_user"]["cold_start"]["seconds"] for r in result["scale"]],
        "s-",
        label="one user holds all",
    )
    _axes_log(axes[1], sizes, "seconds")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("Cold start to first answer")
    axes[1].legend(fontsize=8)
    return _save(fig, folder, "footprint.png")


def plot_locomo(result: dict[str, Any], folder: Path) -> str | None:
    if "locomo" not in result:
        return None
    run = result["locomo"]["encrypted"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for mode in MODES:
        axes[0].plot(KS, [run["recall"][mode][f"@{k}"] for k in KS], "o-", label=f"memvault {mode}")
    mem0 = result.get("mem0", {}).get("locomo")
    if mem0 and "recall" in mem0:
        axes[0].plot(KS, [mem0["recall"][f"@{k}"] for k in KS], "^--", label="mem0 (vector)")
    axes[0].set_xticks(KS)
    axes[0].set_xlabel("k")
    axes[0].set_ylabel("recall@k of the evidence turns")
    axes[0].set_ylim(0, 1)
    axes[0].grid(True, alpha=0.3)
    axes[0].legend()
    axes[0].set_title("LoCoMo recall@k")
    categories = list(run["recall_at_10_by_category"]["hybrid"])
    width = 0.8 / (len(MODES) + (1 if mem0 else 0))
    for i, mode in enumerate(MODES):
        values = [run["recall_at_10_by_category"][mode][c] for c in categories]
        axes[1].bar([x + i * width for x in range(len(categories))], values, width, label=mode)
    if mem0:
        values = [mem0["recall_at_10_by_category"].get(c, 0) for c in categories]
        axes[1].bar(
            [x + len(MODES) * width for x in range(len(categories))], values, width, label="mem0"
        )
    axes[1].set_xticks([x + 0.4 - width / 2 for x in range(len(categories))], categories)
    axes[1].set_ylabel("recall@10")
    axes[1].set_ylim(0, 1)
    axes[1].legend()
    axes[1].set_title("LoCoMo recall@10 by question category")
    return _save(fig, folder, "locomo.png")


def plot_mem0(result: dict[str, Any], folder: Path) -> str | None:
    mem0 = _mem0_by_size(result)
    ours = {r["memories"]: r for r in result["scale"]}
    sizes = sorted(s for s in mem0 if s in ours)
    if not sizes:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    xs = range(len(sizes))
    axes[0].bar(
        [x - 0.2 for x in xs],
        [ours[s]["in_process"]["bulk_load"]["memories_per_second"] for s in sizes],
        0.4,
        label="memvault add_many",
    )
    axes[0].bar(
        [x + 0.2 for x in xs], [mem0[s]["add_per_second"] for s in sizes], 0.4, label="mem0 add"
    )
    axes[0].set_ylabel("memories per second")
    axes[0].set_title("Loading")
    for ax in axes:
        ax.set_xticks(list(xs), [f"{s:,} memories" for s in sizes])
        ax.grid(True, axis="y", alpha=0.3)
    for offset, quantile in ((-0.3, "p50"), (-0.1, "p95")):
        axes[1].bar(
            [x + offset for x in xs],
            [ours[s]["in_process"]["search_ms"]["large_user"][quantile] for s in sizes],
            0.2,
            label=f"memvault {quantile}",
        )
    for offset, quantile in ((0.1, "p50"), (0.3, "p95")):
        axes[1].bar(
            [x + offset for x in xs],
            [mem0[s]["search_ms"]["large_user"][quantile] for s in sizes],
            0.2,
            label=f"mem0 {quantile}",
        )
    axes[1].set_yscale("log")
    axes[1].yaxis.set_major_formatter(ScalarFormatter())
    axes[1].set_ylabel("ms (log scale)")
    axes[1].set_title("Search in the large user's scope, in process")
    axes[0].legend()
    axes[1].legend()
    return _save(fig, folder, "mem0.png")


def _save(fig: Any, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for the figures issues #4 and #7 ask for."""
    rows: list[tuple[str, str, bool | None]] = []
    by_size = {r["memories"]: r for r in result["scale"]}
    top = by_size.get(100_000)
    if top and "rest" in top:
        s = top["rest"]["search_ms"]["large_user"]
        rows.append(
            (
                "REST search at 100,000 (user with 10,000): p50 <= 12 ms, p95 <= 25 ms",
                f"{s['p50']} / {s['p95']} ms",
                s["p50"] <= 12 and s["p95"] <= 25,
            )
        )
    if top:
        rss = (
            top.get("rest", {}).get("server_memory", {}).get("peak_mb")
            or top["cold_start"]["peak_rss_mb"]
        )
        rows.append(
            (
                "resident memory at 100,000 with the model loaded <= 600 MB (server peak)",
                f"{rss} MB",
                rss <= 600,
            )
        )
        cold = top["cold_start"]["seconds"]
        rows.append(("cold start at 100,000 <= 3 s", f"{cold} s", cold <= 3))
    mem0 = _mem0_by_size(result)
    for size in sorted(mem0):
        if size not in by_size:
            continue
        ours = by_size[size]["in_process"]
        speed = (
            mem0[size]["search_ms"]["large_user"]["p50"] / ours["search_ms"]["large_user"]["p50"]
        )
        rows.append(
            (
                f"in-process search p50 >= 3x faster than mem0 at {size:,}",
                f"{speed:.1f}x",
                speed >= 3,
            )
        )
        load = ours["bulk_load"]["memories_per_second"] / mem0[size]["add_per_second"]
        rows.append((f"bulk load >= 2x mem0's at {size:,}", f"{load:.1f}x", load >= 2))
    locomo = result.get("locomo", {}).get("encrypted")
    theirs = result.get("mem0", {}).get("locomo")
    if locomo and theirs:
        ours10 = locomo["recall"]["hybrid"]["@10"]
        rows.append(
            (
                "LoCoMo recall@10 >= mem0's",
                f"{ours10:.3f} vs {theirs['recall_at_10']:.3f}",
                ours10 >= theirs["recall_at_10"],
            )
        )
    ten = by_size.get(10_000)
    if ten and "rest" in ten:
        s, a = ten["rest"]["search_ms"]["large_user"], ten["rest"]["add_ms"]
        rows.append(
            (
                "#4: REST at 10,000 (user with 1,000): search p50 <= 15, p95 <= 30, add p50 <= 20 ms",
                f"{s['p50']} / {s['p95']} / {a['p50']} ms",
                s["p50"] <= 15 and s["p95"] <= 30 and a["p50"] <= 20,
            )
        )
        levels = {row["clients"]: row for row in ten["rest"]["throughput"]}
        if 1 in levels and 8 in levels:
            ratio = levels[8]["searches_per_second"] / levels[1]["searches_per_second"]
            rows.append(
                (
                    "#4: 8 clients' throughput >= 1.5x one client's (10,000)",
                    f"{ratio:.2f}x",
                    ratio >= 1.5,
                )
            )
    return rows


def _ms(s: dict[str, float]) -> str:
    return f"{s['p50']} / {s['p95']} / {s['p99']}"


def markdown(result: dict[str, Any], plots: dict[str, str | None], stem: str) -> str:
    m = result["machine"]
    lines = [
        f"# memvault benchmark, {result['date']}",
        "",
        f"Machine `{m['name']}`: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}. "
        f"Local embedder (all-MiniLM-L6-v2 int8 ONNX), encryption on, SQLite. Took {result['seconds']:.0f} s. "
        "Latencies are p50 / p95 / p99 in ms. Made by `make bench` (bench/suite.py); bench/README.md explains every figure.",
        "",
        "## Targets",
        "",
        *table_head("target", "measured", "met"),
    ]
    for target, measured, met in targets(result):
        lines.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    lines += [
        "",
        "## Scale: many users (one large user holds a tenth)",
        "",
        *table_head(
            "memories",
            "bulk load /s (model alone)",
            "add, in process",
            "search large user, in process",
            "small users, in process",
            "one user holds all, in process",
            "cold start (peak RSS)",
            "disk",
        ),
    ]
    for r in result["scale"]:
        ip = r["in_process"]
        lines.append(
            f"| {r['memories']:,} | {ip['bulk_load']['memories_per_second']} ({ip['bulk_load']['raw_embed_per_second']}) "
            f"| {_ms(ip['add_ms'])} | {_ms(ip['search_ms']['large_user'])} | {_ms(ip['search_ms']['small_users'])} "
            f"| {_ms(r['one_user']['search_ms'])} | {r['cold_start']['seconds']} s ({r['cold_start']['peak_rss_mb']} MB) "
            f"| {ip['disk_bytes'] / 2**20:.1f} MB |"
        )
    if all("rest" in r for r in result["scale"]):
        lines += [
            "",
            "## Over the wire",
            "",
            *table_head(
                "memories",
                "REST search, large user",
                "REST search, small users",
                "REST add",
                "MCP search",
                "server CPU per search",
                "server RSS (peak)",
            ),
        ]
        for r in result["scale"]:
            rest = r["rest"]
            lines.append(
                f"| {r['memories']:,} | {_ms(rest['search_ms']['large_user'])} | {_ms(rest['search_ms']['small_users'])} "
                f"| {_ms(rest['add_ms'])} | {_ms(rest['mcp_search_ms'])} | {rest['server_cpu_ms_per_search']} ms "
                f"| {rest['server_memory']['rss_mb']} ({rest['server_memory']['peak_mb']}) MB |"
            )
        clients = [row["clients"] for row in result["scale"][0]["rest"]["throughput"]]
        lines += [
            "",
            "REST search throughput (searches/s, p50 ms) by concurrent clients:",
            "",
            *table_head("memories", *(f"{c} clients" for c in clients)),
        ]
        for r in result["scale"]:
            cells = [
                f"{row['searches_per_second']}/s, {row['latency_ms']['p50']} ms"
                for row in r["rest"]["throughput"]
            ]
            lines.append(f"| {r['memories']:,} | " + " | ".join(cells) + " |")
    if "locomo" in result:
        on, off = result["locomo"]["encrypted"], result["locomo"]["plaintext"]
        lines += [
            "",
            f"## Retrieval quality: LoCoMo ({on['memories']} memories, {on['questions']} questions)",
            "",
            *table_head("mode", "category", *(f"recall@{k}" for k in KS)),
        ]
        for mode in MODES:
            lines.append(
                f"| {mode} | all | "
                + " | ".join(f"{on['recall'][mode][f'@{k}']:.3f}" for k in KS)
                + " |"
            )
            for category in on["recall_by_category"][mode]["@10"]:
                lines.append(
                    f"| {mode} | {category} | "
                    + " | ".join(
                        f"{on['recall_by_category'][mode][f'@{k}'][category]:.3f}" for k in KS
                    )
                    + " |"
                )
        same = result["locomo"]["questions_with_identical_top20"]
        lines += [
            "",
            "Encryption on and off (off: bench/locomo.py's PlainCipher, the same code with no cryptography):",
            "",
            *table_head("", "encrypted", "plaintext"),
            f"| bulk load, memories/s | {on['add']['memories_per_second']} | {off['add']['memories_per_second']} |",
            f"| hybrid search p50 / p95, ms | {on['search_ms']['hybrid']['p50']} / {on['search_ms']['hybrid']['p95']} | {off['search_ms']['hybrid']['p50']} / {off['search_ms']['hybrid']['p95']} |",
            f"| BM25 search p50, ms | {on['search_ms']['bm25']['p50']} | {off['search_ms']['bm25']['p50']} |",
            f"| data directory | {on['disk_bytes'] / 2**20:.2f} MB | {off['disk_bytes'] / 2**20:.2f} MB |",
            f"| hybrid recall@10 | {on['recall']['hybrid']['@10']:.4f} | {off['recall']['hybrid']['@10']:.4f} |",
            "",
            "Questions whose top 20 are identical with and without encryption: "
            + ", ".join(f"{mode} {same[mode]}/{on['questions']}" for mode in MODES)
            + ".",
        ]
    if "mem0" in result:
        mem0 = result["mem0"]
        ours = {r["memories"]: r for r in result["scale"]}
        lines += [
            "",
            "## Side by side with mem0 2.2.1 (same run, same model, its default local store, infer=False)",
            "",
            *table_head("memories", "", "memvault", "mem0", "memvault / mem0"),
        ]
        for run in mem0.get("scale", []):
            size = run["memories"]
            if size not in ours:
                continue
            ip = ours[size]["in_process"]
            load, add = ip["bulk_load"]["memories_per_second"], run["add_per_second"]
            lines.append(
                f"| {size:,} | load, memories/s (add_many vs add) | {load} | {add} | {load / add:.1f}x |"
            )
            for quantile in ("p50", "p95"):
                a, b = (
                    ip["search_ms"]["large_user"][quantile],
                    run["search_ms"]["large_user"][quantile],
                )
                lines.append(
                    f"| {size:,} | search {quantile}, large user, ms | {a} | {b} | {b / a:.1f}x faster |"
                )
            a, b = ip["search_ms"]["small_users"]["p50"], run["search_ms"]["small_users"]["p50"]
            lines.append(
                f"| {size:,} | search p50, small users, ms | {a} | {b} | {b / a:.1f}x faster |"
            )
            lines.append(f"| {size:,} | open (model load), s | - | {run['open_seconds']} | |")
        if "locomo" in mem0 and "locomo" in result:
            a = result["locomo"]["encrypted"]["recall"]["hybrid"]["@10"]
            b = mem0["locomo"]["recall_at_10"]
            lines.append(f"| LoCoMo | recall@10 | {a:.3f} | {b:.3f} | {a - b:+.3f} |")
        lines += [
            "",
            "What of mem0 cannot run offline, and is off here: its BM25 keyword search (fastembed "
            "downloads its model at run time), its entity extraction and lemmatisation (spaCy "
            "models), and `infer=True` (an LLM). mem0 here is plain dense search over Qdrant's local "
            "on-disk mode. mem0 has no bulk add, so its load is one `add` per memory.",
        ]
    lines += ["", "## Plots", ""]
    for name in plots.values():
        if name:
            lines.append(f"![{name}]({stem}/{name})")
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out: Path, stem: str) -> str:
    folder = out / stem
    plots = {
        "load": plot_load(result, folder),
        "latency": plot_latency(result, folder),
        "add": plot_add(result, folder),
        "throughput": plot_throughput(result, folder),
        "footprint": plot_footprint(result, folder),
        "locomo": plot_locomo(result, folder),
        "mem0": plot_mem0(result, folder),
    }
    text = markdown(result, plots, stem)
    (out / f"{stem}.md").write_text(text)
    return text


if __name__ == "__main__":
    path = Path(sys.argv[1])
    print(write(json.loads(path.read_text()), path.parent, path.stem))
