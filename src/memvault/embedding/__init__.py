"""Embedders by name: each provider is registered once, here, with a factory from settings."""

from __future__ import annotations

from collections.abc import Callable

from memvault.config import Settings
from memvault.embedding.base import Embedder, Vectors, normalize_rows
from memvault.embedding.hashing import HashEmbedder
from memvault.errors import InvalidConfig

__all__ = [
    "Embedder",
    "HashEmbedder",
    "Vectors",
    "create_embedder",
    "normalize_rows",
    "register_embedder",
]

EmbedderFactory = Callable[[Settings], Embedder]
_REGISTRY: dict[str, EmbedderFactory] = {}


def register_embedder(name: str, factory: EmbedderFactory) -> None:
    """Make ``name`` usable as ``embedder=name`` / ``MEMVAULT_EMBEDDER=name``."""
    if name in _REGISTRY:
        raise InvalidConfig(f"an embedder named {name!r} is already registered")
    _REGISTRY[name] = factory


def check_embedder_name(name: str) -> EmbedderFactory:
    """The factory registered as ``name``, or an error that lists the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidConfig(f"unknown embedder {name!r}; known: {known}") from None


def create_embedder(name: str, settings: Settings) -> Embedder:
    return check_embedder_name(name)(settings)


def _local(settings: Settings) -> Embedder:
    from memvault.embedding.onnx import OnnxEmbedder

    return OnnxEmbedder(settings.model_path, settings.tokenizer_path)


def _openai(settings: Settings) -> Embedder:
    from memvault.embedding.openai import OpenAIEmbedder

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIEmbedder(
        settings.openai_base_url,
        settings.openai_model,
        api_key=key,
        dimensions=settings.openai_dimensions,
        timeout=settings.openai_timeout_seconds,
    )


register_embedder("local", _local)
register_embedder("hash", lambda settings: HashEmbedder())
register_embedder("openai", _openai)
