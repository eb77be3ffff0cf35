"""HNSW graphs kept on disk between runs, sealed with their key scope's data key.

A graph is derived from the scope's vectors, so it is user data: it is written only as a box of
the scope's data key (``ScopeCipher.seal_file``, AES-256-GCM) whose associated data binds the key
scope id (namespace, owner and key generation), the scope's version when the graph was built, the
vector dimension and the format tag ``FORMAT``. A file copied from another scope, from another key
generation, or written by another format is refused; a file of an older scope version (writes
came since) is not used: the graph is built again in the background and written anew.

Files live in ``<home>/ann/`` (0700), one per key scope, named by a keyed hash of the scope id
(HMAC-SHA256 with a key derived from the store's system key, so neither the user id nor the scope
id appears in a name, and erase can still find the file after the user's key is destroyed);
each is written 0600 to a temporary file, fsynced, renamed over the old one, and the directory
fsynced. The same code serves SQLite and Postgres: the files are beside the store, in the node's
home.

The file starts with ``FORMAT`` and the version as plain bytes (neither is user data) so that a
stale file is told apart from a forged one without decrypting it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

from memvault.errors import IntegrityError
from memvault.retrieval import ann
from memvault.security.crypto import ScopeCipher
from memvault.storage.files import ensure_private_dir, open_private

__all__ = ["FORMAT", "GraphFiles", "Loaded"]

FORMAT = b"memvault/ann-graph/v1"
_VERSION = struct.Struct(">Q")


class Loaded:
    """What ``GraphFiles.load`` found: a graph, or why none (``missing``, ``stale``,
    ``refused``)."""

    __slots__ = ("graph", "outcome")

    def __init__(self, outcome: str, graph: ann.HnswIndex | None = None) -> None:
        self.outcome = outcome
        self.graph = graph


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
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return True

    def load(
        self, scope_id: str, version: int, dimensions: int, positions: Mapping[str, int]
    ) -> Loaded:
        """The graph of ``scope_id`` at ``version`` over the rows at ``positions``. A stale or
        refused file is deleted (the caller builds the graph again and saves it)."""
        path = self.path_for(scope_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return Loaded("missing")
        head = len(FORMAT) + _VERSION.size
        if len(data) < head or not data.startswith(FORMAT):
            self.delete(scope_id)
            return Loaded("refused")
        (written_at,) = _VERSION.unpack_from(data, len(FORMAT))
        if written_at != version:
            self.delete(scope_id)
            return Loaded("stale")
        cipher = self._cipher(scope_id)
        if cipher is None:
            return Loaded("missing")
        try:
            plain = cipher.open_file(
                self._associated(version, dimensions), data[head:], "the scope's HNSW graph"
            )
        except IntegrityError:
            self.delete(scope_id)
            return Loaded("refused")
        graph = ann.HnswIndex.restore(dimensions, plain, positions)
        if graph is None:
            self.delete(scope_id)
            return Loaded("refused")
        return Loaded("loaded", graph)

    def delete(self, scope_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(scope_id).unlink()
