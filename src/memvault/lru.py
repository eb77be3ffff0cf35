"""One small least-recently-used cache bounded in bytes *and* entries, used by every in-process
cache that holds decrypted or caller-chosen data (decrypted metadata, stems, data-key ciphers).

``functools.lru_cache`` bounds entries only, so its worst case is entries x the largest value a
caller can make (gigabytes of plaintext). Here each entry is charged an estimate of its size
(``size(key, value)``), and the oldest entries go until both budgets hold; an entry larger than
the byte budget is simply not kept. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, NamedTuple, TypeVar

__all__ = ["ByteLRU", "CacheInfo", "memoize", "text_size"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_OVERHEAD = 200  # bytes an entry costs beyond its payload (dict slot, tuple, object headers)


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    maxsize: int
    currsize: int
    bytes: int
    max_bytes: int


def text_size(*parts: object) -> int:
    """A cheap upper-bound estimate of the memory held by strings and bytes (4 bytes a char)."""
    total = _OVERHEAD
    for part in parts:
        if isinstance(part, str):
            total += 4 * len(part)
        elif isinstance(part, bytes | bytearray):
            total += len(part)
        elif isinstance(part, tuple):
            total += text_size(*part)
        else:
            total += 32
    return total


class ByteLRU(Generic[K, V]):
    def __init__(self, *, max_bytes: int, max_entries: int, size: Callable[[K, V], int]) -> None:
        if max_bytes <= 0 or max_entries <= 0:
            raise ValueError("a cache budget must be positive")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._size = size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def find(self, key: K) -> tuple[V] | None:
        """``(value,)`` when cached (now the most recently used), else None."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return (found[0],)

    def get(self, key: K) -> V | None:
        found = self.find(key)
        return None if found is None else found[0]

    def put(self, key: K, value: V) -> None:
        cost = self._size(key, value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if cost > self.max_bytes:
                return
            self._entries[key] = (value, cost)
            self._bytes += cost
            while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
                _, (_, freed) = self._entries.popitem(last=False)
                self._bytes -= freed

    def pop(self, key: K) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def cache_info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(
                self._hits,
                self._misses,
                self.max_entries,
                len(self._entries),
                self._bytes,
                self.max_bytes,
            )


class _Memoized(Generic[V]):
    """A function's results in a ``ByteLRU`` keyed by its positional arguments."""

    def __init__(self, function: Callable[..., V], cache: ByteLRU[tuple[object, ...], V]) -> None:
        self._function = function
        self._cache = cache

    def __call__(self, *args: object) -> V:
        found = self._cache.find(args)
        if found is not None:
            return found[0]
        value = self._function(*args)
        self._cache.put(args, value)
        return value

    def cache_info(self) -> CacheInfo:
        return self._cache.cache_info()

    def cache_clear(self) -> None:
        self._cache.clear()


def memoize(function: Callable[..., V], *, max_bytes: int, max_entries: int) -> _Memoized[V]:
    """``function`` with its results kept in a ``ByteLRU`` (arguments and result: str, bytes,
    tuples of them, small scalars)."""
    cache: ByteLRU[tuple[object, ...], V] = ByteLRU(
        max_bytes=max_bytes, max_entries=max_entries, size=lambda k, v: text_size(k, v)
    )
    return _Memoized(function, cache)
