"""Settings: one typed object, from ``MEMVAULT_*`` variables, an optional TOML file and arguments.

Precedence, highest first: explicit arguments (``Memory(...)``, ``from_config``, CLI flags), the
environment, the TOML file named by ``MEMVAULT_CONFIG`` (or ``memvault.toml`` in the home), then the
defaults below. Nothing is read at import time: ``Settings.load()`` is called by ``Memory`` and the
CLI when they start.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memvault.errors import InvalidConfig

__all__ = ["Settings", "default_home"]

CONFIG_FILE_NAME = "memvault.toml"
# Recency half-lives: from about 15 minutes to 1,000 years (longer is the same as none).
MIN_HALF_LIFE_DAYS = 0.01
MAX_HALF_LIFE_DAYS = 365_000.0


def default_home() -> Path:
    """The platform's user data dir (never /tmp): ``~/.local/share/memvault`` on Linux."""
    return Path(platformdirs.user_data_dir("memvault", appauthor=False))


class Settings(BaseSettings):
    """Everything a ``Memory`` or the CLI can be told; each field is also ``MEMVAULT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="MEMVAULT_", extra="forbid")

    home: Path = Field(default_factory=default_home, description="Data directory (created 0700).")
    namespace: str = Field("default", description="Tenant: the hard isolation boundary.")
    embedder: str = Field("local", description="local | hash | openai")
    master_key: SecretStr | None = Field(
        None, description="Base64 of 32 bytes. Without it a 0600 key file in the home is used."
    )
    database_url: SecretStr | None = Field(
        None,
        description="postgresql://user:password@host/db for the Postgres store (several nodes);"
        " unset: SQLite files in the home.",
    )
    keys_database_url: SecretStr | None = Field(
        None,
        description="Postgres only: a separate database for the key store (default: its own"
        " schema, memvault_keys, in the data database).",
    )
    database_pool_size: int = Field(
        8, ge=1, le=256, description="Postgres only: connections per process."
    )
    database_pool_timeout_seconds: float = Field(
        5,
        gt=0,
        le=600,
        description="Postgres only: how long a request waits for a connection (none free, or the"
        " server down) before it answers storage_busy (503).",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", description="SQLite durability: FULL survives power loss, NORMAL only a crash."
    )
    sqlite_busy_timeout_seconds: float = Field(
        30,
        gt=0,
        le=3600,
        description="SQLite: how long a write waits for a lock another process holds before it"
        " answers storage_busy (503, nothing applied).",
    )
    reseal_on_open: bool = Field(
        True,
        description="Move rows of older versions to the current seal format when the store opens"
        " (off: call Memory.reseal_legacy() yourself; reads work for both formats meanwhile).",
    )
    max_text_bytes: int = Field(32 * 1024, gt=0, description="Longest memory text, UTF-8 bytes.")
    max_metadata_bytes: int = Field(16 * 1024, gt=0, description="Largest metadata, JSON bytes.")
    context_window: int = Field(
        2, ge=0, le=8, description="Earlier memories of the scope indexed as a memory's context."
    )
    fusion: Literal["zscore", "rrf", "adaptive"] = Field(
        "zscore",
        description="How vector and BM25 rankings are fused: zscore, rrf, or adaptive (z-scores"
        " that damp flat lists and weak keyword evidence per query; better on paraphrased"
        " questions, slightly worse on LoCoMo: bench/results/2026-12-04-paraphrase).",
    )
    vector_weight: float = Field(
        0.5, ge=0, description="Weight of the vector ranking in fusion (BM25 weighs 1)."
    )
    recency_half_life_days: dict[Literal["semantic", "episodic", "procedural"], float] = Field(
        default_factory=dict,
        description="Recency decay per memory type: a memory's score loses half of recency_weight"
        " when it is this many days old (since its last change); types not named do not decay."
        " Empty (the default): no decay; it lowered LoCoMo recall (docs/architecture.md, Search).",
    )
    recency_weight: float = Field(
        1.0,
        ge=0,
        le=10,
        description="The most recency decay lowers a score, in standard deviations of the"
        " candidates' scores (used only with recency_half_life_days).",
    )
    reinforcement_weight: float = Field(
        0.0,
        ge=0,
        le=10,
        description="The most reads (access_count) raise a score, in standard deviations of the"
        " candidates' scores; half of it at 10 reads. 0 (the default): off.",
    )
    context_weight: float = Field(
        0.5, ge=0, description="BM25 weight of the context field against the memory's own text."
    )
    expand_seeds: int = Field(
        0,
        ge=0,
        le=50,
        description="Expansion: the first hits of a hybrid search whose linked memories (the"
        " memories written just before and after them in the same conversation) are fused as a"
        " third ranking. 0 (the default): off; it did not raise LoCoMo recall"
        " (bench/results/2026-12-05-retrieval).",
    )
    expand_sources: Literal["conversation", "entities", "conversation+entities"] = Field(
        "conversation",
        description="Expansion: where links come from: `conversation` (the memories written"
        " just before and after a hit by the same user, agent and run), `entities` (memories"
        " naming the same people, places, things, dates or titles) or both.",
    )
    expand_per_seed: int = Field(
        2, ge=1, le=16, description="Expansion: at most this many linked memories per first hit."
    )
    expand_weight: float = Field(
        0.5, ge=0, le=10, description="Expansion: weight of the links' ranking in fusion."
    )
    feedback_seeds: int = Field(
        0,
        ge=0,
        le=20,
        description="Pseudo-relevance feedback: the first hits whose words (as keyed token"
        " hashes) are searched again with BM25 as another ranking. 0 (the default): off.",
    )
    feedback_terms: int = Field(
        8, ge=1, le=64, description="Pseudo-relevance feedback: new terms searched (tf x idf)."
    )
    feedback_weight: float = Field(
        0.3, ge=0, le=10, description="Pseudo-relevance feedback: weight of its ranking."
    )
    vector_feedback_seeds: int = Field(
        3,
        ge=0,
        le=20,
        description="Vector pseudo-relevance feedback: the query's vector moved toward the mean"
        " of the first hits' vectors and searched again as another ranking (Rocchio). 0: off;"
        " 3 (the default) lifted paraphrase recall@1 and LoCoMo multi-hop and temporal recall"
        " (bench/results/2026-12-05-retrieval).",
    )
    vector_feedback_weight: float = Field(
        0.3, ge=0, le=10, description="Vector pseudo-relevance feedback: weight of its ranking."
    )
    diversity: float = Field(
        0.0,
        ge=0,
        le=10,
        description="Maximal marginal relevance: a hit loses this many score spreads times its"
        " highest cosine with a hit ranked above it. 0 (the default): off.",
    )
    max_concurrent_searches: int = Field(
        2,
        ge=1,
        le=256,
        description="Searches (and query-embedding model calls) run at once in one process; "
        "others queue, and queries waiting are embedded together.",
    )
    max_filter_seconds: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="Time budget of one filtered read; a filter that needs more is refused "
        "with filter_too_expensive instead of holding a core.",
    )
    vector_cache_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="Budget of decrypted vector indexes kept in memory."
    )
    ann_threshold: int = Field(
        20_000,
        ge=0,
        description="Rows from which a key scope is searched through an approximate (HNSW, int8)"
        " index, its candidates re-scored exactly; smaller scopes are scanned exactly. 0: never."
        " Needs the ann extra (usearch); without it every scope is scanned exactly.",
    )
    model_path: Path | None = Field(None, description="Another ONNX sentence model (local).")
    tokenizer_path: Path | None = Field(None, description="Its tokenizer.json (local).")
    host: str = Field("127.0.0.1", description="Server address (memvault serve).")
    port: int = Field(8765, ge=0, le=65535, description="Server port.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; none by default."
    )
    cors_allow_credentials: bool = False
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IPs or networks) whose X-Forwarded-For is believed; none by"
        " default: the client address is the connection's.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the server answers to besides localhost, 127.0.0.1 and [::1]"
        " (with or without a port); other Host headers get 421.",
    )
    rate_limit: str = Field("600/minute", description="Requests per API key (limits syntax).")
    namespace_rate_limit: str | None = Field(
        None,
        description="Requests per namespace, over all its keys (default: twice rate_limit):"
        " minting keys does not multiply a tenant's budget.",
    )
    max_keys_per_namespace: int = Field(
        1000, gt=0, description="Live API keys a namespace may hold (POST /v1/keys/ refuses more)."
    )
    auth_failure_limit: str = Field(
        "30/minute", description="Failed authentications per client address."
    )
    redis_url: str | None = Field(None, description="Shared rate-limit counters across nodes.")
    max_body_bytes: int = Field(1024 * 1024, gt=0, description="Largest request body.")
    request_timeout_seconds: float = Field(
        8,
        gt=0,
        description="A request's head and body must arrive within this many seconds of the"
        " connection opening (or of the previous answer on it); else 408 and the connection"
        " is closed (slowloris).",
    )
    max_connections: int = Field(
        1000, gt=0, description="Open connections (or running requests) before new ones get 503."
    )
    gc_interval_seconds: float = Field(
        3600, ge=0, description="How often the server purges expired memories (0: never)."
    )
    audit_jsonl: Path | None = Field(
        None, description="Also append every audit entry to this JSON-lines file (for a SIEM)."
    )
    auth: bool = Field(True, description="Require API keys (off only on a loopback address).")
    dashboard: bool = Field(True, description="Serve the web dashboard at /ui.")
    dashboard_session_seconds: float = Field(
        8 * 3600,
        ge=60,
        le=30 * 86400,
        description="A dashboard session ends this long after sign-in.",
    )
    dashboard_idle_seconds: float = Field(
        1800, ge=60, le=30 * 86400, description="... or this long after its last request."
    )
    async_mode: bool | None = Field(
        None,
        description="add(infer=True) queues a job and answers at once (unset: off in the library,"
        " on in the server).",
    )
    job_workers: int = Field(
        2, ge=0, le=64, description="Worker threads of the job queue in the server (0: none)."
    )
    job_max_attempts: int = Field(5, ge=1, le=100, description="Attempts before a job is dead.")
    job_lease_seconds: float = Field(
        60,
        ge=0.5,
        le=3600,
        description="How long a claim holds without renewal: a job whose worker died is taken"
        " again after this.",
    )
    job_retry_seconds: float = Field(
        2, ge=0, le=3600, description="First retry delay of a failed job (doubles each time)."
    )
    job_poll_seconds: float = Field(
        1, gt=0, le=60, description="How often an idle worker looks for jobs queued elsewhere."
    )
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Where webhooks may be delivered: host names (`hooks.example.com`,"
        " `*.example.com` for its subdomains), IP addresses and CIDR networks. Empty (the"
        " default): no webhook can be configured. A name's addresses must be public unless a"
        " listed network holds them (private, loopback, link-local and metadata addresses"
        " are refused otherwise).",
    )
    webhook_allow_http: bool = Field(
        False, description="Allow http:// webhook URLs (default: https:// only)."
    )
    webhook_workers: int = Field(
        1, ge=0, le=16, description="Webhook delivery threads in the server (0: none)."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=100, description="Attempts before a webhook delivery is dead."
    )
    webhook_retry_seconds: float = Field(
        10, ge=0, le=3600, description="First retry delay of a failed delivery (doubles, jittered)."
    )
    webhook_max_backoff_seconds: float = Field(
        3600, ge=0, le=86400, description="The longest delay between two delivery attempts."
    )
    webhook_timeout_seconds: float = Field(
        10, gt=0, le=120, description="Timeout of one delivery (connect and answer)."
    )
    webhook_keep_delivered_days: float = Field(
        7, gt=0, le=3650, description="How long delivered events stay listed before removal."
    )
    openai_base_url: str = Field("http://127.0.0.1:11434/v1", description="OpenAI-compatible API.")
    openai_api_key: SecretStr | None = None
    openai_model: str = "text-embedding-3-small"
    openai_dimensions: int | None = Field(None, gt=0)
    openai_timeout_seconds: float = Field(
        30, gt=0, le=600, description="Timeout of one embedding request (then 503)."
    )
    llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible chat API for add(infer=True) (OpenAI, Ollama, vLLM,"
        " LM Studio, llama.cpp server), e.g. http://127.0.0.1:11434/v1; unset: no LLM.",
    )
    llm_model: str | None = Field(None, description="The chat model's name at that endpoint.")
    llm_api_key: SecretStr | None = Field(
        None, description="Sent only as the Authorization header to llm_base_url."
    )
    llm_max_attempts: int = Field(
        3, ge=1, le=20, description="Attempts per LLM call (timeouts, 429, 5xx) before fallback."
    )
    llm_timeout_seconds: float = Field(60, gt=0, description="Timeout of one LLM request.")
    llm_backoff_seconds: float = Field(
        0.5, ge=0, le=60, description="First retry delay (doubles, with jitter, capped at 30 s)."
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_is_an_id(cls, value: str) -> str:
        from memvault.errors import InvalidId
        from memvault.validation import check_namespace

        try:
            return check_namespace(value)
        except InvalidId as exc:  # pydantic reports ValueErrors with the field's name
            raise ValueError(exc.message) from None

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _webhook_destinations_parse(cls, value: list[str]) -> list[str]:
        from memvault.webhooks.destination import AllowList

        try:
            AllowList.parse(value)
        except InvalidConfig as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("recency_half_life_days")
    @classmethod
    def _half_lives_are_durations(cls, value: dict[str, float]) -> dict[str, float]:
        for memory_type, days in value.items():
            if not math.isfinite(days) or not MIN_HALF_LIFE_DAYS <= days <= MAX_HALF_LIFE_DAYS:
                raise ValueError(
                    f"the half-life of {memory_type} memories must be between"
                    f" {MIN_HALF_LIFE_DAYS} and {MAX_HALF_LIFE_DAYS} days, not {days}"
                )
        return value

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Build settings from arguments, environment and TOML, or raise ``InvalidConfig``."""
        explicit = {k: v for k, v in overrides.items() if v is not None}
        file_values = _read_toml(config_file, explicit.get("home"))
        env_names = {f"MEMVAULT_{name.upper()}" for name in cls.model_fields}
        from_env = {n for n in env_names if n in os.environ}
        # The environment beats the file: drop file keys that the environment also sets.
        merged = {k: v for k, v in file_values.items() if f"MEMVAULT_{k.upper()}" not in from_env}
        merged.update(explicit)
        try:
            return cls(**merged)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            raise InvalidConfig(f"invalid settings: {problems}") from None


def _read_toml(config_file: Path | None, home: Any) -> dict[str, Any]:
    path = config_file or (
        Path(os.environ["MEMVAULT_CONFIG"]) if "MEMVAULT_CONFIG" in os.environ else None
    )
    if path is None:
        base = Path(home) if home else Path(os.environ.get("MEMVAULT_HOME") or default_home())
        candidate = base / CONFIG_FILE_NAME
        if not candidate.is_file():
            return {}
        path = candidate
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise InvalidConfig(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("memvault", data)
    if not isinstance(section, dict):
        raise InvalidConfig(f"config file {path}: [memvault] must be a table")
    return dict(section)
