"""Settings of the guardit service, read from ``GUARDIT_*`` environment variables (SPEC.md)."""

from __future__ import annotations

import ipaddress
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from steering.config import AUTO, DEFAULT_THRESHOLD, GateSetting

SCOPES = ("generate", "compare", "forget", "admin")


class Settings(BaseSettings):
    """Every setting of the service; documented again in ``deploy/.env.example``."""

    model_config = SettingsConfigDict(env_prefix="GUARDIT_", extra="ignore")

    model: str = Field("smollm2-135m-instruct", description="LLM: embedded alias, local HF model dir, or .gguf path")
    embedder: str = Field("all-minilm-l6-v2", description="sentence-transformer for the gate: alias or local dir")
    data_dir: Path = Field(default_factory=lambda: default_data_dir(),
                           description="registry, converted models, logs; default $XDG_DATA_HOME/guardit, "
                           "else ~/.local/share/guardit (one registry per user, whatever the current folder)")
    database_url: str | None = Field(None, description="default sqlite:///<data dir>/registry.db; postgresql://...")
    api_keys: dict[str, list[str]] | None = Field(
        None, description='JSON {"<key>": ["<scope>", ...]}; scopes generate, compare, forget, admin')
    host: str = Field("127.0.0.1", description="bind address; non-loopback needs API keys")
    port: int = Field(8000, ge=1, le=65535, description="bind port")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch device")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype; auto: bfloat16 on CUDA, float32 on CPU (bfloat16 is ~2.4x faster on "
        "CPUs with AVX-512 BF16 or AMX, but closed rows then depend on their batch mates). Forget sets built in "
        "one dtype steer in another (vectors are float32)")
    engine: Literal["native", "vllm"] = Field(
        "native", description="generation engine: native (built in) or vllm (needs the vLLM venv: "
        "scripts/setup_vllm.sh; same routes, gate and answer policy, steering applied inside vLLM)")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM engine: GPUs per replica (tensor parallelism)")
    kv_cache_gib: float = Field(1.0, gt=0, description="vLLM engine: memory for its KV cache, GiB (CPU RAM on CPU)")

    default_threshold: float = Field(DEFAULT_THRESHOLD, ge=-1.0, le=1.0,
                                     description="gate threshold T for new forget sets")
    default_gate: GateSetting = Field(
        AUTO, description="gate rule for new forget sets: auto (subject for one person, else hybrid), "
        "hybrid, subject, or paper (the paper's centroid gate, for comparisons)")
    default_alpha: float | None = Field(
        None, ge=0.0, description="strength for new forget sets; unset = calibrated per model (0.2 if unknown)")
    calibrate_alpha: bool = Field(
        True, description="choose alpha per QA forget set at build time (smallest that removes the known answers)")
    answer_recheck: bool = Field(
        True, description="when the prompt leaves the gate closed, gate the prompt plus the answer and the "
        "answer alone and, if that opens, answer again steered (streams: from the text already sent); "
        "catches questions avoiding the name")
    leak_check: bool = Field(
        True, description="check every answer for a forget set's content before it leaves: steer again, "
        "then harder, then abstain (steering.recheck)")
    abstain_text: str = Field(
        "I don't have information about that.", min_length=1, max_length=500,
        description="the neutral answer given instead of one that would leak or is degenerate")
    stream_holdback_tokens: int = Field(
        16, ge=1, le=256, description="while a forget set is active, a stream's tokens are held back until "
        "the answer policy has checked them, this many tokens at a time (adds about that many tokens of "
        "generation time to the time to first token)")
    verify_on_build: bool = Field(
        True, description="once a forget set is active, run its verification probes (own questions, "
        "paraphrases, attack shapes, neighbours) through the answer policy and store the report")
    verify_per_kind: int = Field(2, ge=1, le=50, description="verification probes per kind")
    max_new_tokens: int = Field(512, ge=1, description="upper bound of max_new_tokens per request")
    max_prompt_tokens: int = Field(4096, ge=1, description="longest accepted prompt, in tokens")
    max_prompt_chars: int | None = Field(
        None, ge=1, description="longest accepted prompt (all messages together), in characters, checked "
        "before tokenization; unset = 16 x max_prompt_tokens")
    max_forget_documents: int = Field(5000, ge=1, description="largest forget set, in documents")
    max_document_chars: int = Field(20000, ge=1, description="longest forget/retain document, in characters")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="largest accepted request body")
    max_batch_size: int = Field(8, ge=1, description="rows per generation batch")
    batch_wait_ms: float = Field(5.0, ge=0.0, description="how long a batch waits for more requests to join")
    queue_size: int = Field(64, ge=1, description="queued requests before 429")
    request_timeout_s: float = Field(300.0, gt=0.0, description="per-request limit")
    sync_interval_s: float = Field(1.0, gt=0.0, description="how often the registry is polled for changes")
    recover_stale_after_s: float = Field(
        0.0, ge=0.0, description="at start, builds left 'building' longer than this are requeued; when > 0 the "
        "server also checks while it runs, so a dead replica's build is taken over; with several replicas set "
        "it above the longest build so a live build on another replica is not taken")
    use_triton: bool = Field(True, description="use the fused Triton kernel on CUDA")
    log_level: str = Field("INFO", description="root log level")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    metrics_scope: Literal["", "generate", "compare", "forget", "admin"] = Field(
        "", description="scope a key needs to read /metrics; empty: open (the default). Set it (e.g. admin, "
        "with Prometheus sending that key) where applications can reach the server's port: the gate "
        "counters tell a caller whether its own prompt opened the gate")
    expose_gate_to_generate: bool = Field(
        False, description="show the gate's decision (guardit: steered, matched, rechecked) to callers "
        "holding only the generate scope; off: only compare/admin keys see it (trusted apps only)")
    default_temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="temperature of OpenAI-compatible requests that omit it "
        "(OpenAI's own default is 1; 0 = greedy)")
    url: str | None = Field(None, description="CLI: base URL of a running guardit server (e.g. "
                            "http://127.0.0.1:8000); unset = the CLI works on the local registry itself")
    api_key: str | None = Field(None, description="CLI: bearer key sent to GUARDIT_URL (not needed in the "
                                "server's loopback dev mode)")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else None
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("expected at least one key in GUARDIT_API_KEYS, found an empty object")
        for key, scopes in value.items():
            if len(key) < 16:
                raise ValueError("expected API keys of at least 16 characters, found a shorter one")
            unknown = sorted(set(scopes) - set(SCOPES))
            if unknown:
                raise ValueError(f"expected scopes from {list(SCOPES)}, found {unknown}")
        return value

    @model_validator(mode="after")
    def _loopback_without_keys(self) -> Settings:
        if self.api_keys is None and not is_loopback(self.host):
            raise ValueError(
                f"expected GUARDIT_API_KEYS when binding a non-loopback host, found host {self.host!r} "
                "without keys (local dev mode is loopback only)")
        return self

    @property
    def dev_mode(self) -> bool:
        """No API keys: every scope granted, loopback only."""
        return self.api_keys is None

    @property
    def prompt_char_limit(self) -> int:
        """``max_prompt_chars``, or 16 characters per allowed prompt token when unset."""
        return self.max_prompt_chars if self.max_prompt_chars is not None else 16 * self.max_prompt_tokens

    @property
    def model_cache_dir(self) -> Path:
        """Where converted models are cached."""
        return self.data_dir / "models"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/guardit``, else ``~/.local/share/guardit`` (XDG base directory rules: a relative
    ``XDG_DATA_HOME`` is ignored)."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "guardit"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
