"""``build_app``: the proxy with the label guard, as ``labelgate serve`` runs it.

It builds, from ``config.guard``: the policy (an invalid one raises ``PolicyError``, one line
``file:line: field: message``), the fingerprint store (SQLite, or PostgreSQL shared by replicas:
``config.state``, through ``ProxyState.shared``), the ``Guard``, the audit writer,
tracing, the approvals, the ``PolicyHook`` and its endpoints; and closes them in order on
shutdown (spans flushed into the writer, the writer flushed and closed, the store closed).
With ``guard.enabled: false`` it is the plain pass-through gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware

from labelgate.guard.audit.writer import AuditWriter
from labelgate.guard.engine import Guard
from labelgate.guard.fingerprint import FingerprintStore, LookupOptions
from labelgate.guard.models import ChatModel
from labelgate.guard.policy import load_policy
from labelgate.guard.recorded_spans import RecordedSpans
from labelgate.guard.tracing import setup_tracing
from labelgate.proxy.app import ProxyState, create_app
from labelgate.proxy.approvals import ApproverToken
from labelgate.proxy.config import ConfigError, GuardSettings, ProxyConfig
from labelgate.proxy.labelgate_routes import guard_routes
from labelgate.proxy.policy_hook import PolicyHook
from labelgate.proxy.recording import Recorder


@dataclass(slots=True)
class GuardRuntime:
    """What ``build_app`` made, on ``app.state.guard`` (for tests and operators)."""

    guard: Guard
    hook: PolicyHook
    writer: AuditWriter
    fingerprints: FingerprintStore
    tracing: TracerProvider
    approver_token: ApproverToken | None = None  # keyless: the approvers' credential

    async def close(self) -> None:
        # Order matters: spans go into the writer, so the provider shuts down first.
        await asyncio.to_thread(self.tracing.shutdown)
        try:
            await asyncio.to_thread(self.writer.close)
        finally:
            try:
                await self.hook.aclose()  # answers still being fingerprinted are stored
            finally:
                self.fingerprints.close()


def _check_stored_labels(store: FingerprintStore, settings: GuardSettings) -> None:
    """A store written under another policy's lattice would fail every request that
    re-identifies one of its texts: refuse to start instead, saying why."""
    problems = store.unreadable_labels()
    if problems:
        store.close()
        more = f"; and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise ConfigError(
            f"fingerprint store {store.path} holds labels the policy {settings.policy} cannot "
            f"read ({problems[0]}{more}): serve it with the policy it was written with, or "
            "start with another guard.state_dir"
        )


def build_runtime(
    config: ProxyConfig,
    state: ProxyState,
    *,
    memory_exporter: InMemorySpanExporter | None = None,
) -> GuardRuntime:
    settings = config.guard
    policy = load_policy(settings.policy)  # first: a bad policy leaves nothing half-open
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    fingerprints = state.shared.fingerprints(settings, policy.lattice)
    _check_stored_labels(fingerprints, settings)
    audit = settings.audit_path()
    # Answers are journaled before they leave (no answer without its record, even on kill -9);
    # what an earlier process left in the journal is stored first.
    journal = audit.parent / f"{audit.stem}-journal"
    days = settings.audit_retention_days
    # The audit trail: the state's PostgreSQL database (one trail for every replica) or this
    # replica's SQLite file; the journal is this replica's, under its state_dir, either way.
    postgres = config.state.backend == "postgres"
    writer = AuditWriter(
        config.state.resolved_dsn() if postgres else audit,
        process=settings.audit_process,
        journal=journal,
        retention=timedelta(days=days) if days is not None else None,
    )
    provider = setup_tracing(settings.tracing, writer, memory_exporter=memory_exporter)
    lookup = LookupOptions(one_per_label=True, run_words=settings.copied_run_words)
    guard = Guard(policy, fingerprints=fingerprints, lookup=lookup)
    capture = settings.capture_content or settings.tracing.capture_content
    hook = PolicyHook(
        guard,
        state.router,
        propagator=settings.propagator,
        propagator_model=settings.propagator_model,
        propagator_options=settings.propagator_options,
        deny_mode=settings.deny_mode,
        replay=settings.replay,
        read_your_writes=config.state.read_your_writes,
        approvals=state.shared.approvals(settings.approvals_timeout),
        recorder=Recorder(writer, RecordedSpans(provider), capture_content=capture),
    )
    token = None if config.keys else ApproverToken(settings.state_dir)
    return GuardRuntime(guard, hook, writer, fingerprints, provider, token)


def build_app(
    config: ProxyConfig,
    *,
    models: dict[str, ChatModel] | None = None,
    memory_exporter: InMemorySpanExporter | None = None,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """The gateway with the label guard (``config.guard``); ``models`` and ``middleware`` as
    in ``create_app``."""
    if not config.guard.enabled:
        return create_app(config, models=models, middleware=middleware)
    state = ProxyState(config, None, dict(models or {}))
    runtime = build_runtime(config, state, memory_exporter=memory_exporter)
    state.hook = runtime.hook
    app = create_app(
        config,
        state=state,
        routes=guard_routes(runtime.hook, runtime.approver_token),
        on_shutdown=[runtime.close],
        middleware=middleware,
    )
    app.state.guard = runtime
    return app
