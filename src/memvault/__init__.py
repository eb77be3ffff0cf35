"""memvault: encrypted long-term memory for AI agents, with mem0's API.

from memvault import Memory
m = Memory()                                   # ~/.local/share/memvault, local model
m.add("Alice is allergic to peanuts", user_id="alice")
m.search("what can't alice eat?", user_id="alice")
"""

from typing import TYPE_CHECKING, Any

from memvault.async_memory import AsyncMemory
from memvault.config import Settings
from memvault.embedding import Embedder, HashEmbedder, register_embedder
from memvault.errors import (
    AddressUnavailable,
    CryptoError,
    DeliveryNotRetryable,
    DestinationRefused,
    EmbedderError,
    EmbedderUnavailable,
    EmbeddingModelMismatch,
    EmptyText,
    FilterTooExpensive,
    Forbidden,
    HostNotAllowed,
    IntegrityError,
    InvalidConfig,
    InvalidFilter,
    InvalidId,
    InvalidInput,
    InvalidMetadata,
    JobNotRetryable,
    LLMBadOutput,
    LLMError,
    LLMUnavailable,
    MemvaultError,
    MissingDependency,
    MissingScope,
    NotFound,
    OriginNotAllowed,
    PayloadTooLarge,
    RateLimited,
    RateLimiterUnavailable,
    SecretDetected,
    StorageBusy,
    StorageError,
    TextTooLong,
    TooManyKeys,
    Unauthorized,
    UnsupportedOption,
    WrongMasterKey,
)
from memvault.memory import Memory

if TYPE_CHECKING:
    from memvault.client import AsyncClient, Client

__version__ = "0.1.0"

__all__ = [
    "AddressUnavailable",
    "AsyncClient",
    "AsyncMemory",
    "Client",
    "CryptoError",
    "DeliveryNotRetryable",
    "DestinationRefused",
    "Embedder",
    "EmbedderError",
    "EmbedderUnavailable",
    "EmbeddingModelMismatch",
    "EmptyText",
    "FilterTooExpensive",
    "Forbidden",
    "HashEmbedder",
    "HostNotAllowed",
    "IntegrityError",
    "InvalidConfig",
    "InvalidFilter",
    "InvalidId",
    "InvalidInput",
    "InvalidMetadata",
    "JobNotRetryable",
    "LLMBadOutput",
    "LLMError",
    "LLMUnavailable",
    "Memory",
    "MemvaultError",
    "MissingDependency",
    "MissingScope",
    "NotFound",
    "OriginNotAllowed",
    "PayloadTooLarge",
    "RateLimited",
    "RateLimiterUnavailable",
    "SecretDetected",
    "Settings",
    "StorageBusy",
    "StorageError",
    "TextTooLong",
    "TooManyKeys",
    "Unauthorized",
    "UnsupportedOption",
    "WrongMasterKey",
    "__version__",
    "register_embedder",
]


def __getattr__(name: str) -> Any:
    """``Client`` and ``AsyncClient`` on first use: they need httpx, which a server or a script
    using ``Memory`` alone never loads (it costs a tenth of a second at start)."""
    if name in ("Client", "AsyncClient"):
        from memvault import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
