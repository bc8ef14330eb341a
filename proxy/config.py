"""Proxy configuration, in the style of LiteLLM's proxy ``config.yaml``.

```yaml
model_list:
  - model_name: gpt-4o                  # what clients ask for
    litellm_params:
      model: openai/gpt-4o              # any litellm model string
      api_base: https://api.example/v1
      api_key: os.environ/OPENAI_API_KEY
      timeout: 30
      max_retries: 1
    fallbacks: [local/smollm2]
router_settings:
  fallbacks: [{gpt-4o: [local/smollm2]}]
keys:
  - key_hash: sha256:...                # `labelgate keys hash` prints one
    agent_id: planner
    clearance: internal
server: {host: 127.0.0.1, port: 4000, max_request_bytes: 4194304}
```
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labelgate.guard.models import LOCAL_MODEL_NAME
from labelgate.guard.paths import DB_ENV
from labelgate.guard.tracing import TracingConfig
from labelgate.policies import pack_path
from labelgate.proxy.httppool import Endpoint

ENV_PREFIX = "os.environ/"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ConfigError(ValueError):
    """The configuration cannot be used; the message is one readable line."""


def resolve_env(value: str | None) -> str | None:
    """``os.environ/NAME`` means the value of NAME, which must be set."""
    if value is None or not value.startswith(ENV_PREFIX):
        return value
    name = value[len(ENV_PREFIX) :]
    if name not in os.environ:
        raise ValueError(f"environment variable {name} is not set")
    return os.environ[name]


class LiteLLMParams(BaseModel):
    # Extra keys (api_version, temperature defaults...) go to litellm unchanged.
    model_config = ConfigDict(extra="allow")

    model: str
    api_base: str | None = None
    api_key: str | None = None
    timeout: float = Field(600.0, gt=0)
    stream_timeout: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0)
    passthrough: bool | None = None  # None: decide from model and api_base

    _resolve = field_validator("api_key", "api_base")(resolve_env)

    @field_validator("api_base")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        if value is not None:
            Endpoint.parse(value)  # raises ValueError naming the URL
        return value

    def extra_params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def uses_passthrough(self) -> bool:
        if self.passthrough is not None:
            return self.passthrough
        return self.model.startswith("openai/") and self.api_base is not None


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_name: str
    litellm_params: LiteLLMParams
    fallbacks: list[str] = Field(default_factory=list)


class RouterSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    num_retries: int = Field(0, ge=0)
    retry_backoff: float = Field(0.05, ge=0)  # seconds, doubled on each retry
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_second: float = Field(gt=0)
    burst: int = Field(1, ge=1)


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_hash: str
    agent_id: str
    clearance: str | None = None
    # Which label assertions the key may make; opaque here, read by the guard.
    assertions: dict[str, Any] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None
    max_concurrency: int | None = Field(None, ge=1)

    @field_validator("key_hash")
    @classmethod
    def _hex_sha256(cls, value: str) -> str:
        digest = value.removeprefix("sha256:").lower()
        if not _HEX64.match(digest):
            raise ValueError("key_hash must be a sha256 hex digest (see `labelgate keys hash`)")
        return digest


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(4000, ge=0, le=65535)
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1)


Propagator = Literal["join", "counterfactual", "citation", "similarity", "introspection"]


class GuardSettings(BaseModel):
    """The ``guard:`` section: the label guard between the clients and the models."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    policy: Path = Field(default_factory=lambda: pack_path("default"))
    # counterfactual: its permissive verdicts are backed by re-queries showing the dropped
    # inputs did not change the answer (and it falls back to the join when unsure); it runs
    # only when the join would block, so allowed traffic pays nothing. See docs/proxy.md.
    propagator: Propagator = "counterfactual"
    propagator_model: str | None = None  # default: the model the request went to
    propagator_options: dict[str, Any] = Field(default_factory=dict)
    deny_mode: Literal["replace", "error"] = "replace"
    state_dir: Path = Path(".labelgate")  # audit.db and fingerprints.db ($LABELGATE_DB wins)
    approvals_timeout: float = Field(60.0, gt=0)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    capture_content: bool = False  # prompts and answers in spans (the audit store keeps them)
    # The audit store is written by a child process, so writing does not hold the proxy's
    # GIL (latency); false: by a thread of the proxy (one process, e.g. for embedding).
    audit_process: bool = True
    # The fingerprint store's SQL inverted index (hash -> text), for SQL-only lookups. The
    # proxy looks texts up in memory, and the index doubles an answer's write (random-order
    # B-tree inserts): a new store is made without it unless asked. A store that has it keeps it.
    fingerprint_postings: bool = False

    def audit_path(self) -> Path:
        configured = os.environ.get(DB_ENV)
        return Path(configured) if configured else self.state_dir / "audit.db"

    def fingerprints_path(self) -> Path:
        return self.state_dir / "fingerprints.db"


class ProxyConfig(BaseModel):
    # Unknown top-level sections of a LiteLLM config (general_settings...) are tolerated.
    model_config = ConfigDict(extra="allow")

    model_list: list[ModelEntry] = Field(default_factory=list)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    litellm_settings: RouterSettings = Field(default_factory=RouterSettings)
    keys: list[KeyEntry] = Field(default_factory=list)
    server: ServerSettings = Field(default_factory=ServerSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)

    def model_names(self) -> list[str]:
        return list(dict.fromkeys(entry.model_name for entry in self.model_list))

    def deployments(self, name: str) -> list[ModelEntry]:
        return [entry for entry in self.model_list if entry.model_name == name]

    def fallbacks(self, name: str) -> list[str]:
        found: list[str] = []
        for entry in self.deployments(name):
            found.extend(entry.fallbacks)
        for settings in (self.router_settings, self.litellm_settings):
            for rule in settings.fallbacks:
                found.extend(rule.get(name, []))
        return [f for f in dict.fromkeys(found) if f != name]

    def num_retries(self, entry: ModelEntry) -> int:
        if entry.litellm_params.max_retries is not None:
            return entry.litellm_params.max_retries
        return max(self.router_settings.num_retries, self.litellm_settings.num_retries)


def default_config() -> ProxyConfig:
    """No config file: serve the embedded local model."""
    local = ModelEntry(
        model_name=LOCAL_MODEL_NAME, litellm_params=LiteLLMParams(model=LOCAL_MODEL_NAME)
    )
    return ProxyConfig(model_list=[local])


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "config"
    return f"{where}: {err['msg']}"


def parse_config(data: dict[str, Any] | None, *, source: str = "config") -> ProxyConfig:
    try:
        return ProxyConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


def load_config(path: str | Path | None) -> ProxyConfig:
    if path is None:
        return default_config()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}".splitlines()[0]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return parse_config(data, source=str(path))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(config: ProxyConfig, host: str) -> None:
    """Secure by default: without API keys, only loopback may be bound."""
    if not config.keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without API keys: add `keys:` to the config "
            "or bind 127.0.0.1"
        )
