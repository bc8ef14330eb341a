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
      ssl_verify: /etc/labelgate/internal-ca.pem   # CA bundle (default true: the system's)
      ssl_certificate: /etc/labelgate/client.pem   # mutual TLS (pass-through deployments)
      ssl_certificate_key: /etc/labelgate/client.key
    fallbacks: [local/smollm2]
router_settings:
  fallbacks: [{gpt-4o: [local/smollm2]}]
litellm_settings:
  ssl_verify: true                      # the defaults of every deployment
keys:
  - key_hash: sha256:...                # `labelgate keys hash` prints one
    agent_id: planner                   # what it may read: the policy's agents.planner
server: {host: 127.0.0.1, port: 4000, max_request_bytes: 4194304}
```
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labelgate.guard.models import LOCAL_MODEL_NAME
from labelgate.guard.paths import DB_ENV
from labelgate.guard.policy.errors import PolicyError
from labelgate.guard.policy.yamlsrc import LineMap, load_yaml
from labelgate.guard.tracing import TracingConfig
from labelgate.policies import pack_path
from labelgate.proxy.httppool import Endpoint
from labelgate.proxy.tls import TlsError, TlsSettings, tls_context

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


def _verify(value: bool | str | None) -> bool | str | None:
    """``ssl_verify``: true, false, or a CA bundle's path (``os.environ/NAME`` allowed)."""
    if isinstance(value, str):
        value = resolve_env(value)
        if value is not None and value.lower() in ("true", "false"):
            return value.lower() == "true"
    return value


class _TlsFields(BaseModel):
    """LiteLLM's TLS settings (``ssl_certificate_key`` is nginx's name for the key file). None
    means: as the global ``litellm_settings`` say, else true (the system's authorities)."""

    ssl_verify: bool | str | None = None
    ssl_certificate: str | None = None
    ssl_certificate_key: str | None = None

    _resolve_verify = field_validator("ssl_verify")(_verify)
    _resolve_paths = field_validator("ssl_certificate", "ssl_certificate_key")(resolve_env)


class LiteLLMParams(_TlsFields):
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


class LiteLLMSettings(RouterSettings, _TlsFields):
    """``litellm_settings``: the router's settings, and the TLS defaults of every deployment."""


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_second: float = Field(gt=0)
    burst: int = Field(1, ge=1)


KNOWN_ASSERTIONS = frozenset({"approve"})


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_hash: str
    agent_id: str
    # Not a key's setting (refused at load, so it cannot be believed to work): the policy's
    # ``agents:`` section sets what an agent may read.
    clearance: None = None
    # The key vouches for the tool names, sources and URLs it sends (its agent runtime reports
    # them honestly): rules they select may then lower a label (endorse a sanitizer's output,
    # label a web page public). Without it they are the client's claim: stricter only.
    may_raise: bool = False
    # What the key may do besides calling models: ``approve: true`` answers approvals.
    assertions: dict[str, Any] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None
    max_concurrency: int | None = Field(None, ge=1)

    @field_validator("clearance", mode="before")
    @classmethod
    def _no_clearance(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "a key does not set a clearance: the policy's `agents:` section does "
                "(agents.<agent_id>.clearance), for the agent this key names"
            )
        return None

    @field_validator("assertions")
    @classmethod
    def _known_assertions(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - KNOWN_ASSERTIONS)
        if unknown:
            known = ", ".join(sorted(KNOWN_ASSERTIONS))
            raise ValueError(f"unknown assertion {unknown[0]!r} (known: {known})")
        if "approve" in value and not isinstance(value["approve"], bool):
            raise ValueError("approve must be true or false")
        return value

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
    # A tool call denied because untrusted data reached it is proposed again to the model with
    # that data reduced to its values (no prose): the same call again lifts the integrity
    # denial (proxy/replay.py). One extra model call per such answer; false: never.
    replay: bool = True
    state_dir: Path = Path(".labelgate")  # audit.db and fingerprints.db ($LABELGATE_DB wins)
    # The fingerprint store, if not ``state_dir/fingerprints.db`` (an eval run keeps its own, so
    # that one run's texts are not re-identified in the next)
    fingerprints: Path | None = None
    approvals_timeout: float = Field(60.0, gt=0)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    capture_content: bool = False  # prompts and answers in spans (the audit store keeps them)
    # The audit store is written by a child process, so writing does not hold the proxy's
    # GIL (latency); false: by a thread of the proxy (one process, e.g. for embedding).
    audit_process: bool = True
    # Delete audit records written more than this many days ago (sealed: audit verify still
    # passes for what remains), checked hourly while requests come in. None: keep everything.
    audit_retention_days: float | None = Field(None, gt=0)
    # The fingerprint store's SQL inverted index (hash -> text), for SQL-only lookups. The
    # proxy looks texts up in memory, and the index doubles an answer's write (random-order
    # B-tree inserts): a new store is made without it unless asked. A store that has it keeps it.
    fingerprint_postings: bool = False
    # A run of this many words copied from a stored text re-identifies it whatever share of it
    # the new text holds (10-word excerpts found 88%; 3% false positives on templated English
    # that shares 8-word phrases: docs/fingerprints.md); null: by share only. 9: 62% / 1.4%.
    copied_run_words: int | None = Field(8, ge=7)  # 7: the shortest run always fingerprinted
    # Refused requests (bad key, over a limit, cross-origin, unknown path...) get a compact
    # record each up to this rate, then per-source summaries (proxy/refusals.py).
    refusal_records: RateLimit = Field(
        default_factory=lambda: RateLimit(requests_per_second=20, burst=200)
    )

    def audit_path(self) -> Path:
        configured = os.environ.get(DB_ENV)
        return Path(configured) if configured else self.state_dir / "audit.db"

    def fingerprints_path(self) -> Path:
        return self.fingerprints or self.state_dir / "fingerprints.db"


class StateSettings(BaseModel):
    """The ``state:`` section: where what replicas must share is kept. ``sqlite`` (the
    embedded default): files under ``guard.state_dir``, one process. ``postgres``: one
    PostgreSQL database (``dsn``, ``os.environ/NAME`` allowed) shared by every replica: the
    fingerprint store, ingested documents, the audit trail, pending approvals, rate limits."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "postgres"] = "sqlite"
    dsn: str | None = None
    # Across replicas, a relayed answer is found once the others have loaded it (milliseconds:
    # docs/deploy.md). True: a non-streamed answer leaves only once stored, and each request
    # first loads what the others stored (a transaction per answer, a query per request).
    read_your_writes: bool = False

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StateSettings:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError("state.backend postgres needs state.dsn (a PostgreSQL URL)")
        if self.backend == "sqlite" and self.dsn:
            raise ValueError("state.dsn is set but state.backend is sqlite (say postgres)")
        return self

    def resolved_dsn(self) -> str:
        dsn = resolve_env(self.dsn)
        if not dsn:
            raise ConfigError("state.dsn is empty")
        return dsn


class ProxyConfig(BaseModel):
    # Unknown top-level sections of a LiteLLM config (general_settings...) are tolerated.
    model_config = ConfigDict(extra="allow")

    model_list: list[ModelEntry] = Field(default_factory=list)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    litellm_settings: LiteLLMSettings = Field(default_factory=LiteLLMSettings)
    keys: list[KeyEntry] = Field(default_factory=list)
    server: ServerSettings = Field(default_factory=ServerSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    state: StateSettings = Field(default_factory=StateSettings)

    @model_validator(mode="after")
    def _one_fingerprint_store(self) -> ProxyConfig:
        # A file named for the fingerprints would be silently unused: say so at load.
        if self.state.backend == "postgres" and self.guard.fingerprints is not None:
            raise ValueError(
                "guard.fingerprints names a SQLite file, but with state.backend postgres the "
                "fingerprints are kept in the database: drop guard.fingerprints"
            )
        return self

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

    def tls(self, entry: ModelEntry) -> TlsSettings:
        """The TLS settings of a deployment: its own, else the global ones (a client
        certificate and its key go together)."""
        own, common = entry.litellm_params, self.litellm_settings
        verify = own.ssl_verify if own.ssl_verify is not None else common.ssl_verify
        mine = own.ssl_certificate is not None or own.ssl_certificate_key is not None
        source = own if mine else common
        return TlsSettings(
            True if verify is None else verify,
            source.ssl_certificate,
            source.ssl_certificate_key,
        )

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


Loc = tuple[str | int, ...]


def _error(source: str, lines: LineMap | None, loc: Loc, message: str) -> ConfigError:
    """``file:line: field: message``, the line where the field is (or its nearest parent)."""
    line = lines.line_for(loc) if lines is not None else None
    where = f"{source}:{line}" if line is not None else source
    field = ".".join(str(part) for part in loc) or "config"
    return ConfigError(f"{where}: {field}: {message}")


_TLS_FIELDS = ("ssl_verify", "ssl_certificate", "ssl_certificate_key")


def _tls_problem(config: ProxyConfig) -> tuple[Loc, str] | None:
    """The first TLS setting that cannot be used (a file missing, not PEM, a key that does not
    match its certificate, an ``SSL_CERT_FILE`` naming nothing), with where it is set."""
    common = config.litellm_settings
    if any(getattr(common, field) is not None for field in _TLS_FIELDS):
        # Checked even when no deployment uses them: a typo should not wait for its day. The
        # environment's authorities are checked with the deployments that would use them.
        verify = common.ssl_verify if isinstance(common.ssl_verify, str) else False
        try:
            tls_context(TlsSettings(verify, common.ssl_certificate, common.ssl_certificate_key))
        except TlsError as exc:
            return ("litellm_settings", exc.field), exc.message
    checked: set[tuple[TlsSettings, tuple[str | None, str | None]]] = set()
    for i, entry in enumerate(config.model_list):
        params = entry.litellm_params
        own: Loc = ("model_list", i, "litellm_params")
        if not params.uses_passthrough():
            for field in ("ssl_certificate", "ssl_certificate_key"):
                if getattr(params, field) is not None:
                    return (*own, field), (
                        "client certificates apply to pass-through deployments only (litellm "
                        "reads its own from SSL_CERTIFICATE)"
                    )
            continue
        settings = config.tls(entry)
        https = (params.api_base or "").startswith("https:")
        key = (settings, settings.environment())
        if key in checked or not (https or any(getattr(params, f) for f in _TLS_FIELDS)):
            continue
        checked.add(key)
        try:
            tls_context(settings)
        except TlsError as exc:
            if exc.field.startswith("SSL_CERT"):  # the environment's, not the file's
                return (f"environment {exc.field}",), exc.message
            place = own if getattr(params, exc.field, None) is not None else ("litellm_settings",)
            return (*place, exc.field), exc.message
    return None


def parse_config(
    data: dict[str, Any] | None, *, source: str = "config", lines: LineMap | None = None
) -> ProxyConfig:
    try:
        config = ProxyConfig.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise _error(source, lines, tuple(err["loc"]), err["msg"]) from None
    problem = _tls_problem(config)
    if problem is not None:
        raise _error(source, lines, *problem)
    return config


def load_config(path: str | Path | None) -> ProxyConfig:
    if path is None:
        return default_config()
    try:
        data, lines = load_yaml(Path(path).read_text(), str(path))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}".splitlines()[0]) from None
    except PolicyError as exc:  # YAML syntax, a duplicated key: with its line
        raise ConfigError(str(exc).splitlines()[0]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return parse_config(data, source=str(path), lines=lines)


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
