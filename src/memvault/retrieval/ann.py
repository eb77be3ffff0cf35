"""An approximate (HNSW) index over a large key scope's vectors, int8 quantised, in process.

Built (in a background thread of ``VectorCache``) from the scope's decrypted vectors when the scope
reaches ``ann_threshold`` rows, then the only copy of the vectors the scope keeps in memory (int8,
a quarter of the float matrix, which ``Memory``'s cache drops) and patched row by row after: a
write adds, replaces or removes single rows without a rebuild. A graph is also written to disk,
sealed with the scope's data key (``retrieval/graph_files.py``), so that a restart loads it and
catches it up with the writes since (``restore``). The graph only proposes candidates (and orders
them by its int8 cosine); ``ScopeIndex`` applies owner, expiry and filter masks and the candidates
are re-scored exactly with their float vectors (read from the store), so every score a caller
sees is the exact cosine.

The library is usearch (the optional ``ann`` extra). Without it ``available()`` is false and every
scope keeps the exact scan.

Rows of ``ScopeIndex`` move (a removal swaps in the last row), so the graph is keyed by labels that
never change: ``labels[position]`` and ``positions_of[label]`` (-1 once removed) map between them.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["HnswIndex", "available"]

_HEADER = struct.Struct(">I")

CONNECTIVITY = 16  # HNSW "M"
EXPANSION_ADD = 128  # "efConstruction"
MIN_EXPANSION_SEARCH = 128  # "ef" floor; raised to the number of candidates asked
MAX_CATCH_UP = 0.5  # a restored graph patched for more than this share of rows: build instead
_CHUNK = 50_000  # rows per step of a scan over the graph's vectors


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


def _quantise(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.int8]:
    """What usearch stores for a unit vector under the cosine metric and int8: 127 x, rounded
    toward zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1)
    quantised: npt.NDArray[np.int8] = np.trunc(np.clip(unit, -1, 1) * 127).astype(np.int8)
    return quantised


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

    def rebuilt(self, size: int, read: Callable[[Callable[[], None]], bool]) -> HnswIndex | None:
        """A fresh graph of rows 0..size-1 from this graph's own int8 vectors (for a scope that
        keeps no float vectors). ``read(step)`` runs ``step`` under the owner's lock and says
        whether the rows are still those of the start; None once they changed."""
        held = np.empty((size, self._index.ndim), dtype=np.int8)
        for start in range(0, size, _CHUNK):
            part = np.arange(start, min(start + _CHUNK, size), dtype=np.intp)

            def step(part: npt.NDArray[np.intp] = part) -> None:
                held[part] = self.quantised(part)

            if not read(step):
                return None
        fresh = HnswIndex(self._index.ndim)
        for start in range(0, size, _CHUNK):
            part = np.arange(start, min(start + _CHUNK, size), dtype=np.intp)
            fresh.put(part, held[part].astype(np.float32) * np.float32(1 / 127))
        return fresh

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
        cls,
        dimensions: int,
        blob: bytes,
        positions: Mapping[str, int],
        vectors: npt.NDArray[np.float32],
    ) -> tuple[HnswIndex, int] | str:
        """A graph from ``dump``'s bytes, caught up with the scope as it is now: ``positions``
        (memory id -> position) and ``vectors`` (the float vectors by position). Rows the file
        lacks are added, rows it has that are gone are removed, and rows whose vector changed
        since (its int8 form differs) are replaced. The graph and how many rows it changed; None
        when the bytes are not a graph of ``dimensions`` or more than ``MAX_CATCH_UP`` of the
        rows changed (building afresh is then as quick)."""
        Index = _index_class()

        try:
            (length,) = _HEADER.unpack_from(blob)
            header = json.loads(blob[_HEADER.size : _HEADER.size + length])
            graph = Index.restore(blob[_HEADER.size + length :])
            ids, labels = list(header["ids"]), list(header["labels"])
            following, removed = int(header["next"]), int(header["removed"])
        except (ValueError, TypeError, KeyError, struct.error, UnicodeDecodeError):
            return "refused"
        if graph is None or graph.ndim != dimensions or len(ids) != len(labels):
            return "refused"
        restored = cls(dimensions, graph=graph)
        restored._next = following
        restored.removed = removed
        restored._labels = _grow(restored._labels, len(positions))
        restored._positions_of = _grow(restored._positions_of, following)
        gone: list[int] = []
        for memory_id, label in zip(ids, labels, strict=True):
            if not isinstance(label, int) or not 0 <= label < following:
                return "refused"
            position = positions.get(memory_id) if isinstance(memory_id, str) else None
            if position is None or restored._labels[position] >= 0:
                gone.append(label)  # deleted since the file was written (or a duplicate)
                continue
            restored._labels[position] = label
            restored._positions_of[label] = position
        if gone:
            in_graph = np.array(gone, dtype=np.int64)
            in_graph = in_graph[[bool(graph.contains(int(k))) for k in in_graph]]
            if len(in_graph):
                restored._forget(in_graph)
        count = len(positions)
        held = np.flatnonzero(restored._labels[:count] >= 0)
        missing = np.flatnonzero(restored._labels[:count] < 0)
        changed = held[restored._differs(held, vectors)] if len(held) else held
        if len(missing) + len(changed) + len(gone) > MAX_CATCH_UP * max(count, 1):
            return "stale"
        touched = np.concatenate([changed, missing]).astype(np.intp)
        restored.put(touched, vectors[touched])
        restored._index.expansion_search = MIN_EXPANSION_SEARCH
        return restored, len(touched) + len(gone)

    def _differs(
        self, positions: npt.NDArray[np.intp], vectors: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.bool_]:
        """Which of the rows at ``positions`` hold another int8 vector than ``vectors`` gives."""
        out = np.zeros(len(positions), dtype=bool)
        for start in range(0, len(positions), _CHUNK):
            part = positions[start : start + _CHUNK]
            held = self.quantised(part).astype(np.int16)
            want = _quantise(vectors[part]).astype(np.int16)
            # usearch rounds toward zero as _quantise does; allow one step for float error.
            out[start : start + _CHUNK] = np.abs(held - want).max(axis=1) > 1
        return out

    def quantised(self, positions: npt.NDArray[np.intp]) -> npt.NDArray[np.int8]:
        """The int8 vectors the graph holds for the rows at ``positions`` (each held)."""
        if len(positions) == 0:
            return np.zeros((0, self._index.ndim), dtype=np.int8)
        found = self._index.get(self._labels[positions])
        return np.stack(found).astype(np.int8, copy=False)

    def vectors(self, positions: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        """The rows' unit vectors as the graph holds them (int8, so within 1/127 a coordinate)."""
        scaled: npt.NDArray[np.float32] = self.quantised(positions).astype(np.float32)
        scaled *= np.float32(1 / 127)
        return scaled

    def candidates(
        self, query: npt.NDArray[np.float32], count: int
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        """Positions of about the ``count`` nearest rows, nearest first (approximate), and their
        cosine to ``query`` as the graph computes it (on int8 vectors)."""
        self._index.expansion_search = max(MIN_EXPANSION_SEARCH, count)
        found = self._index.search(query, count, threads=1)
        labels = np.asarray(found.keys, dtype=np.int64)
        similarity = 1 - np.asarray(found.distances, dtype=np.float32)
        positions = self._positions_of[labels]
        held = positions >= 0
        return positions[held].astype(np.intp), similarity[held]
