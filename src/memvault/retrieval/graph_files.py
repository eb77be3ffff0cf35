"""HNSW graphs kept on disk between runs, sealed with their key scope's data key.

A graph is derived from the scope's vectors, so it is user data: it is written only as a box of
the scope's data key (``ScopeCipher.seal_file``, AES-256-GCM) whose associated data binds the key
scope id (namespace, owner and key generation), the scope's version when the graph was built, the
vector dimension and the format tag ``FORMAT``. A file copied from another scope, from another key
generation, written by another format, truncated or unreadable is refused (deleted; the graph is
built again). A file of another scope version (writes came since) is never trusted as it is: its
rows are compared with the scope's as loaded from the store (ids, and each vector's int8 form),
and the rows added, changed or deleted since are patched in (``HnswIndex.restore``); past half the
rows it is stale and the graph is built again. ``VectorCache`` then writes the file anew.

Files live in ``<home>/ann/`` (0700), one per key scope, named by a keyed hash of the scope id
(HMAC-SHA256 with a key derived from the store's system key, so neither the user id nor the scope
id appears in a name, and erase can still find the file after the user's key is destroyed);
each is written 0600 to a temporary file, fsynced, renamed over the old one, and the directory
fsynced. The same code serves SQLite and Postgres: the files are beside the store, in the node's
home.

The file starts with ``FORMAT`` and the version it was written at as plain bytes (neither is user
data; both are bound by the box too, so an edited header fails to open).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from memvault.errors import IntegrityError
from memvault.retrieval import ann
from memvault.security.crypto import ScopeCipher
from memvault.storage.files import ensure_private_dir, open_private

__all__ = ["FORMAT", "GraphFiles", "Loaded"]

log = logging.getLogger(__name__)

FORMAT = b"memvault/ann-graph/v1"
_VERSION = struct.Struct(">Q")


class Loaded:
    """What ``GraphFiles.load`` found: a graph as written (``loaded``) or patched with the writes
    since (``caught_up``), or why none (``missing``, ``stale``, ``refused``)."""

    __slots__ = ("changed", "graph", "outcome")

    def __init__(self, outcome: str, graph: ann.HnswIndex | None = None, changed: int = 0) -> None:
        self.outcome = outcome
        self.graph = graph
        self.changed = changed  # rows patched to catch up with the writes since the file


class GraphFiles:
    """The sealed graph files of one home."""

    def __init__(
        self,
        directory: Path,
        naming_key: Callable[[], bytes],
        cipher: Callable[[str], ScopeCipher | None],
    ) -> None:
        self.directory = directory
        self._naming = naming_key  # read on first use (it may create the system key)
        self._naming_key: bytes | None = None
        self._cipher = cipher

    def path_for(self, scope_id: str) -> Path:
        """Where the graph of ``scope_id`` is kept (a keyed hash of the id: no user id)."""
        if self._naming_key is None:
            self._naming_key = self._naming()
        name = hmac.new(self._naming_key, scope_id.encode(), hashlib.sha256).hexdigest()[:40]
        return self.directory / f"{name}.graph"

    @staticmethod
    def _associated(version: int, dimensions: int) -> list[object]:
        return [FORMAT.decode(), version, dimensions]

    def save(self, scope_id: str, version: int, dimensions: int, plain: bytes) -> bool:
        """Seal ``plain`` (``HnswIndex.dump``) and write it atomically; False when the scope's
        key is gone (erased meanwhile): nothing is written then."""
        cipher = self._cipher(scope_id)
        if cipher is None:
            return False
        box = cipher.seal_file(self._associated(version, dimensions), plain)
        ensure_private_dir(self.directory)
        target = self.path_for(scope_id)
        temporary = target.with_name(f"{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            with open_private(temporary, "xb") as handle:
                handle.write(FORMAT + _VERSION.pack(version) + box)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            if isinstance(exc, OSError):  # disk full, or no file can go there: kept in memory
                log.warning("could not write an HNSW graph file: %s", exc.strerror)
                return False
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return True

    def load(
        self,
        scope_id: str,
        dimensions: int,
        positions: Mapping[str, int],
        vectors: npt.NDArray[np.float32],
    ) -> Loaded:
        """The graph of ``scope_id`` caught up with its rows as they are now (``positions``:
        memory id -> position; ``vectors``: the float vectors by position). A file that fails
        to open or parse is refused and deleted; one that lags by more than half the rows is
        stale and deleted (the caller builds the graph again and saves it)."""
        path = self.path_for(scope_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return Loaded("missing")
        except OSError:  # not a readable file (a directory in its place, no permission)
            return Loaded("refused")
        head = len(FORMAT) + _VERSION.size
        if len(data) < head or not data.startswith(FORMAT):
            self.delete(scope_id)
            return Loaded("refused")
        (written_at,) = _VERSION.unpack_from(data, len(FORMAT))
        cipher = self._cipher(scope_id)
        if cipher is None:
            return Loaded("missing")
        try:
            plain = cipher.open_file(
                self._associated(written_at, dimensions), data[head:], "the scope's HNSW graph"
            )
        except IntegrityError:
            self.delete(scope_id)
            return Loaded("refused")
        restored = ann.HnswIndex.restore(dimensions, plain, positions, vectors)
        if isinstance(restored, str):
            self.delete(scope_id)
            return Loaded(restored)
        graph, changed = restored
        return Loaded("caught_up" if changed else "loaded", graph, changed)

    def delete(self, scope_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(scope_id).unlink()
