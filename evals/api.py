"""Run an eval from Python: ``run_eval(family, model=...)`` returns an ``EvalResult``.

Everything ``labelgate eval run`` does goes through here (the command is a thin layer that
turns flags into these arguments), after Inspect AI's ``eval()``. The proxy is imported only
when ``guard_policy`` asks for an in-process guarded gateway, never at module level.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec

from pydantic import ValidationError

from labelgate.evals.agent import AgentLimits
from labelgate.evals.family import FamilyUnavailable, get_family
from labelgate.evals.runner import RunConfig, RunSummary, new_run_id
from labelgate.guard.models import ChatModel, ModelError

__all__ = ["EvalError", "EvalResult", "run_eval", "run_eval_async"]

P = ParamSpec("P")


class EvalError(Exception):
    """A mistake in what was asked (unknown family, bad options or data, a model that cannot
    be loaded): its message is one readable line."""


@dataclass(frozen=True, slots=True)
class EvalResult:
    """One finished (or partly failed) run: its summary, where its results and report are."""

    family: str
    summary: RunSummary
    db: Path
    report_html: Path
    report_md: Path

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    @property
    def ok(self) -> bool:
        """Every sample ran (failed samples are recorded with their error; resume to retry)."""
        return self.summary.failed == 0


def _model(
    name: str,
    *,
    chat_model: ChatModel | None,
    script: Sequence[str] | None,
    via_proxy: str | None,
    proxy_key: str | None,
    api_base: str | None = None,
    api_key_env: str | None = None,
) -> ChatModel:
    from labelgate.evals.models import endpoint_key, resolve_model
    from labelgate.guard.models import ScriptedModel

    if chat_model is not None:
        return chat_model
    if via_proxy:  # the proxy decides what serves ``name``
        return resolve_model(name, via_proxy=via_proxy, api_key=proxy_key)
    if api_base:  # any OpenAI-compatible endpoint serves ``name``
        return resolve_model(name, api_base=api_base, api_key=endpoint_key(api_key_env))
    if name == "scripted":
        if not script:
            raise EvalError("model 'scripted' needs a script (a non-empty list of responses)")
        return ScriptedModel(list(script), cycle=True)
    return resolve_model(name)


@contextmanager
def _guarded(
    name: str, model: ChatModel, policy: Path | None, db: Path, run_id: str
) -> Iterator[Any]:
    """With a policy: the model served by an in-process guarded gateway (its audit records go
    to ``audit.db`` beside the results; its fingerprints to a store of this run's own, so that
    runs sharing a database stay independent), and a client for it; else nothing."""
    if policy is None:
        yield None
        return
    from labelgate.evals.models import resolve_model
    from labelgate.guard.policy import PolicyError
    from labelgate.proxy.embedded import guarded_proxy

    own_store = db.parent / "guard" / f"{run_id}.fingerprints.db"
    own_store.parent.mkdir(parents=True, exist_ok=True)
    own = {"fingerprints": str(own_store)}
    try:
        with guarded_proxy(
            name, policy=policy, state_dir=db.parent, models={name: model}, guard=own
        ) as url:
            yield resolve_model(name, via_proxy=url)
    except PolicyError as exc:
        raise EvalError(f"invalid policy: {exc}") from None


@contextmanager
def _user_errors() -> Iterator[None]:
    from labelgate.evals.dilemmas.data import DataError

    try:
        yield
    except (DataError, ModelError, FileNotFoundError) as exc:
        raise EvalError(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise EvalError(f"invalid options: {first['loc']}: {first['msg']}") from None
    except ValueError as exc:  # e.g. resuming a run with other options
        raise EvalError(str(exc)) from None


async def run_eval_async(
    family: str,
    *,
    model: str = "local/smollm2",
    chat_model: ChatModel | None = None,
    script: Sequence[str] | None = None,
    limit: int | None = None,
    options: Mapping[str, Any] | None = None,
    limits: AgentLimits | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    epochs: int = 1,
    via_proxy: str | None = None,
    proxy_key: str | None = None,
    api_base: str | None = None,
    api_key_env: str | None = None,
    guard_policy: Path | str | None = None,
    db: Path | str | None = None,
    out_dir: Path | str | None = None,
    run_id: str | None = None,
    concurrency: int = 4,
    cache: bool = False,
    capture_content: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Run (or resume, with ``run_id``) ``family`` and write its report; see ``run_eval``."""
    from labelgate.evals.report import write_report
    from labelgate.evals.runner import Runner
    from labelgate.evals.store import ResultsStore
    from labelgate.evals.tracing import audit_tracing
    from labelgate.guard.paths import default_db_path

    try:
        fam = get_family(family)
    except FamilyUnavailable as exc:
        raise EvalError(str(exc)) from None
    except KeyError as exc:
        raise EvalError(str(exc.args[0])) from None
    if guard_policy is not None and via_proxy:
        raise EvalError("guard_policy starts its own gateway: give it or via_proxy, not both")
    if api_base and via_proxy:
        raise EvalError("via_proxy decides what serves the model: give it or api_base, not both")
    if api_key_env and not api_base:
        raise EvalError("api_key_env names the key of an api_base endpoint: give api_base too")
    sampling = {k: v for k, v in (("temperature", temperature), ("top_p", top_p)) if v is not None}
    run_id = run_id or new_run_id(family)
    path = Path(db) if db is not None else default_db_path()
    out = Path(out_dir) if out_dir is not None else path.parent / "reports"
    policy = Path(guard_policy) if guard_policy is not None else None
    with _user_errors():
        config = RunConfig(
            family=family,
            model=model,
            limit=limit,
            via_proxy=via_proxy,
            cache=cache,
            limits=AgentLimits.model_validate((limits or AgentLimits()).model_dump() | sampling),
            epochs=epochs,
            api_base=api_base.rstrip("/") if api_base else None,
            family_options=_family_options(family, options),
        )
        served = _model(
            model,
            chat_model=chat_model,
            script=script,
            via_proxy=via_proxy,
            proxy_key=proxy_key,
            api_base=api_base,
            api_key_env=api_key_env,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        store = ResultsStore(path)
        try:
            with (
                _guarded(model, served, policy, path, run_id) as guarded,
                audit_tracing(path, capture_content=capture_content) as provider,
            ):
                if guarded is not None:
                    served, config.via_proxy = guarded, f"in-process guard ({policy})"
                runner = Runner(
                    store,
                    provider,
                    concurrency=concurrency,
                    progress=progress,
                    capture_content=capture_content,
                )
                summary = await runner.run(fam, served, config, run_id)
            html, md = write_report(store, summary.run_id, out)
        finally:
            store.close()
    return EvalResult(family, summary, path, html, md)


def _blocking(run: Callable[P, Coroutine[Any, Any, EvalResult]]) -> Callable[P, EvalResult]:
    """``run`` made blocking: in its own event loop, on a worker thread when the caller is
    already in one (a notebook, an async program), since a loop cannot be nested."""

    def blocking(*args: P.args, **kwargs: P.kwargs) -> EvalResult:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(run(*args, **kwargs))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run_eval") as pool:
            return pool.submit(asyncio.run, run(*args, **kwargs)).result()

    return blocking


run_eval = _blocking(run_eval_async)
run_eval.__name__ = run_eval.__qualname__ = "run_eval"
run_eval.__doc__ = """Run (or resume, with ``run_id``) an eval family against a model, store every
sample and write the report; blocking, also when called from a running event loop (a
notebook): ``await run_eval_async(...)`` is the same without blocking.

``model``: ``local/smollm2``, ``scripted`` (with ``script``, a list of responses), or any
litellm model string; ``chat_model``: any ``ChatModel`` object instead (e.g. a
``ScriptedModel``); ``options``: the family's options (``-O KEY=VALUE`` on the command line);
``guard_policy``: the model behind an in-process guarded gateway enforcing that policy;
``via_proxy``: the model through a running ``labelgate serve``; ``api_base``: the model
served by any OpenAI-compatible endpoint (vLLM, Ollama, a gateway; ``model`` is the name it
serves), its key read from the environment variable ``api_key_env`` (none: a placeholder
key, which local servers accept); ``temperature`` and ``top_p``: sampling (they override
``limits``; default greedy, temperature 0); ``epochs``: samples per scenario variant, each
with a seed of its own; ``db``: the results and audit
database (default ``$LABELGATE_DB`` or ``./.labelgate/audit.db``). Raises ``EvalError`` for a
mistake in what was asked; failed samples are recorded and counted, not raised.
"""


def _family_options(family: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options as recorded with the run: scheming's ``sandbox`` resolved (``auto``, the
    default: ``bwrap`` where bubblewrap runs, else ``simulated``), so the run says which."""
    out = dict(options or {})
    if family == "scheming":
        from labelgate.evals.sandbox import resolve_backend

        out["sandbox"] = resolve_backend(str(out.get("sandbox") or "auto"))
    return out
