"""An approximate (HNSW) index over a large key scope's vectors, int8 quantised, in process.

Built (in a background thread of ``VectorCache``) from the scope's decrypted vectors when the scope
reaches ``ann_threshold`` rows, kept in memory beside the float matrix and patched row by row
after: a write adds, replaces or removes single rows without a rebuild. A freshly built graph is
also written to disk, sealed with the scope's data key (``retrieval/graph_files.py``), so that a
restart loads it. The graph only proposes candidates; ``ScopeIndex`` re-scores them exactly with
the float vectors and applies owner, expiry and filter
masks, so every score a caller sees is the exact cosine.

The library is usearch (the optional ``ann`` extra). Without it ``available()`` is false and every
scope keeps the exact scan.

Rows of ``ScopeIndex`` move (a removal swaps in the last row), so the graph is keyed by labels that
never change: ``labels[position]`` and ``positions_of[label]`` (-1 once removed) map between them.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["HnswIndex", "available"]

_HEADER = struct.Struct(">I")

CONNECTIVITY = 16  # HNSW "M"
EXPANSION_ADD = 128  # "efConstruction"
MIN_EXPANSION_SEARCH = 128  # "ef" floor; raised to the number of candidates asked


def _installed(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it (a finder may refuse to look:
    that is not installed either)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def available() -> bool:
    """Whether the HNSW library is installed."""
    return _installed("usearch")


def _index_class() -> Any:
    """usearch's ``Index``, loaded only after ONNX Runtime where that is installed: importing
    ``usearch.index`` first makes a later ``import onnxruntime`` crash the process with SIGSEGV
    (seen with usearch 2.26 / numkong and onnxruntime 1.x: their native libraries do not load
    in that order), and a server loads the model after a scope may have built its graph."""
    if _installed("onnxruntime"):
        import onnxruntime  # noqa: F401

    from usearch.index import Index

    return Index


def _grow(array: npt.NDArray[np.int64], need: int) -> npt.NDArray[np.int64]:
    if need <= len(array):
        return array
    grown = np.full(max(need, 2 * len(array), 16), -1, dtype=np.int64)
    grown[: len(array)] = array
    return grown


class HnswIndex:
    """The graph of one scope's rows, keyed by stable labels."""

    def __init__(self, dimensions: int, *, graph: Any = None) -> None:
        Index = _index_class()

        self._index: Any = (
            graph
            if graph is not None
            else Index(
                ndim=dimensions,
                metric="cos",
                dtype="i8",
                connectivity=CONNECTIVITY,
                expansion_add=EXPANSION_ADD,
                expansion_search=MIN_EXPANSION_SEARCH,
            )
        )
        self._labels = np.full(16, -1, dtype=np.int64)  # position -> label
        self._positions_of = np.full(16, -1, dtype=np.int64)  # label -> position, -1 removed
        self._next = 0
        self.removed = 0  # labels removed since the build (a rebuild would reclaim them)

    @property
    def size(self) -> int:
        return len(self._index)

    @property
    def nbytes(self) -> int:
        held = self._labels.nbytes + self._positions_of.nbytes
        return int(self._index.memory_usage) + int(held)

    def build(self, matrix: npt.NDArray[np.float32]) -> None:
        """Insert rows 0..n-1 of a fresh index (positions equal labels)."""
        self.put(np.arange(len(matrix), dtype=np.intp), matrix)

    def put(self, positions: npt.NDArray[np.intp], vectors: npt.NDArray[np.float32]) -> None:
        """Insert or replace the rows at ``positions`` (a replaced row gets a new label)."""
        if len(positions) == 0:
            return
        self._labels = _grow(self._labels, int(positions.max()) + 1)
        old = self._labels[positions]
        old = old[old >= 0]
        if len(old):
            self._forget(old)
        labels = np.arange(self._next, self._next + len(positions), dtype=np.int64)
        self._next += len(positions)
        self._positions_of = _grow(self._positions_of, self._next)
        self._labels[positions] = labels
        self._positions_of[labels] = positions
        self._index.add(labels, np.ascontiguousarray(vectors, dtype=np.float32))

    def remove(self, position: int, last: int) -> None:
        """Drop the row at ``position``; the row at ``last`` moves there (as in ``ScopeIndex``)."""
        if position >= len(self._labels):
            return
        label = self._labels[position]
        if label >= 0:
            self._forget(np.array([label], dtype=np.int64))
        if position != last and last < len(self._labels):
            moved = self._labels[last]
            self._labels[position] = moved
            if moved >= 0:
                self._positions_of[moved] = position
            self._labels[last] = -1
        else:
            self._labels[position] = -1

    def _forget(self, labels: npt.NDArray[np.int64]) -> None:
        self._index.remove(labels)
        self._positions_of[labels] = -1
        self.removed += len(labels)

    def dump(self, ids: Sequence[str]) -> bytes:
        """The graph and its labels as bytes (in the clear: the caller seals them). ``ids`` are
        the scope's memory ids by position, so that ``restore`` can map the labels onto an index
        whose rows were loaded in another order."""
        labels = self._labels[: len(ids)].tolist()
        header = json.dumps(
            {"next": self._next, "removed": self.removed, "ids": list(ids), "labels": labels},
            separators=(",", ":"),
        ).encode()
        return _HEADER.pack(len(header)) + header + bytes(self._index.save())

    @classmethod
    def restore(
        cls, dimensions: int, blob: bytes, positions: Mapping[str, int]
    ) -> HnswIndex | None:
        """A graph from ``dump``'s bytes over the rows at ``positions`` (memory id -> position);
        None when it does not cover exactly those rows or is not a graph of ``dimensions``."""
        Index = _index_class()

        try:
            (length,) = _HEADER.unpack_from(blob)
            header = json.loads(blob[_HEADER.size : _HEADER.size + length])
            graph = Index.restore(blob[_HEADER.size + length :])
        except (ValueError, struct.error, UnicodeDecodeError):
            return None
        ids, labels = header["ids"], header["labels"]
        if graph is None or graph.ndim != dimensions or len(ids) != len(positions):
            return None
        restored = cls(dimensions, graph=graph)
        restored._next = int(header["next"])
        restored.removed = int(header["removed"])
        restored._labels = _grow(restored._labels, len(ids))
        restored._positions_of = _grow(restored._positions_of, restored._next)
        for memory_id, label in zip(ids, labels, strict=True):
            position = positions.get(memory_id)
            if position is None or not 0 <= label < restored._next:
                return None
            restored._labels[position] = label
            restored._positions_of[label] = position
        restored._index.expansion_search = MIN_EXPANSION_SEARCH
        return restored

    def candidates(self, query: npt.NDArray[np.float32], count: int) -> npt.NDArray[np.intp]:
        """Positions of about the ``count`` nearest rows, nearest first (approximate)."""
        self._index.expansion_search = max(MIN_EXPANSION_SEARCH, count)
        found = self._index.search(query, count, threads=1)
        labels = np.asarray(found.keys, dtype=np.int64)
        positions = self._positions_of[labels]
        kept: npt.NDArray[np.intp] = positions[positions >= 0].astype(np.intp)
        return kept
