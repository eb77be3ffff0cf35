"""Where the time of inference goes around the LLM, by pyinstrument.

A scripted chat server (``memvault.testing.ScriptedChatServer``) answers at once: two facts per
extraction, ``ADD`` for every fact on reconciliation, so what is profiled is memvault's own work
per ``add(infer=True)``: prompts, parsing, the similar-memory searches, embedding (``hash`` by
default, so the model does not hide the rest) and the one transaction per job. N adds of one user,
so every add after the first also reconciles. Prints CPU ms per add and saves
``bench/results/profile-infer.txt``.

    PYTHONPATH=src .venv/bin/python bench/profile_infer.py [--adds 100] [--embedder hash]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler

from infer import responder
from memvault import Memory
from memvault.testing import ScriptedChatServer

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adds", type=int, default=100)
    parser.add_argument("--embedder", default="hash")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "profile-infer.txt")
    args = parser.parse_args()
    with ScriptedChatServer(default=responder(0.0)) as llm, tempfile.TemporaryDirectory() as home:
        with Memory(home, embedder=args.embedder, llm_base_url=llm.base_url, llm_model="s") as m:
            m.add("warm up", user_id="alice", infer=True)
            profiler = Profiler(interval=0.0005)
            begin, cpu = time.perf_counter(), time.process_time()
            profiler.start()
            for i in range(args.adds):
                m.add(f"note {i}: I moved to Lisbon in {2000 + i}", user_id="alice", infer=True)
            profiler.stop()
            wall = (time.perf_counter() - begin) / args.adds * 1000
            cpu_ms = (time.process_time() - cpu) / args.adds * 1000
            calls = len(llm.chat_requests)
    header = (
        f"## {args.adds} add(infer=True) of one user, embedder {args.embedder}: {wall:.2f} ms"
        f" wall, {cpu_ms:.2f} ms CPU per add (both processes' threads: the scripted server runs"
        f" in this one), {calls} LLM calls answered at once (profiler on)\n"
    )
    text = header + profiler.output_text(unicode=False, color=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
