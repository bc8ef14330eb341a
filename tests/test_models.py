"""Chat models: the scripted model, rendering, and the real local model (slow)."""

from __future__ import annotations

import pytest

from labelgate.guard.items import ItemKind, LabeledItem
from labelgate.guard.labels import Lattice
from labelgate.guard.models import (
    ChatResult,
    LocalModel,
    ModelError,
    ScriptedModel,
    local_model_available,
    render_messages,
)

LATTICE = Lattice()


async def test_scripted_model_replays_in_order_and_records_calls() -> None:
    model = ScriptedModel(["one", ChatResult(text="two", finish_reason="length")])
    first = await model.chat([{"role": "user", "content": "hi"}])
    second = await model.chat([{"role": "user", "content": "again"}])
    assert (first.text, second.text, second.finish_reason) == ("one", "two", "length")
    assert [c[0]["content"] for c in model.calls] == ["hi", "again"]
    with pytest.raises(ModelError, match="ran out"):
        await model.chat([])


async def test_scripted_model_from_a_function_sees_the_prompt() -> None:
    model = ScriptedModel(lambda msgs: msgs[-1]["content"].upper())
    assert (await model.chat([{"role": "user", "content": "abc"}])).text == "ABC"


def test_render_keeps_every_item_in_order() -> None:
    items = [
        LabeledItem("sys", LATTICE.bottom, role="system"),
        LabeledItem("page", LATTICE.bottom, kind=ItemKind.TOOL_RESULT, role="tool", name="fetch"),
        LabeledItem("q", LATTICE.bottom, role="user"),
    ]
    msgs = render_messages(items)
    assert [m["role"] for m in msgs] == ["system", "user", "user"]
    assert msgs[1]["content"] == "[tool result: fetch]\npage"


@pytest.mark.slow
@pytest.mark.skipif(not local_model_available(), reason="local model extra not installed")
async def test_local_model_answers_deterministically() -> None:
    model = LocalModel()
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    first = await model.chat(msgs, max_tokens=16)
    second = await model.chat(msgs, max_tokens=16)
    assert first.text.strip()
    assert first.text == second.text
    assert first.completion_tokens > 0


@pytest.mark.skipif(not local_model_available(), reason="local model extra not installed")
def test_every_local_model_load_turns_off_extra_buffer_types() -> None:
    """llama.cpp's AMX kernels crash on repacked weights (Sapphire Rapids and later): both
    places that load the GGUF, the chat model and the embedding scorer, must load it with
    ``use_extra_bufts = False``. Checked on the loaded models' own parameters."""
    from labelgate.guard.similarity import EmbeddingScorer

    chat = LocalModel(n_ctx=256)._llama()
    embedder = EmbeddingScorer()._model()
    assert chat.model_params.use_extra_bufts is False
    assert embedder.model_params.use_extra_bufts is False


def test_a_llama_without_the_setting_is_refused() -> None:
    """An old llama-cpp-python whose parameters lack the field would load with repacking on:
    refused with a clear error, never loaded unsafely."""
    import ctypes

    pytest.importorskip("llama_cpp")
    from labelgate.guard.models import _safe_llama_class

    class OldParams(ctypes.Structure):
        _fields_ = [("use_mmap", ctypes.c_bool)]

    safe = _safe_llama_class().__new__(_safe_llama_class())
    with pytest.raises(ModelError, match="use_extra_bufts"):
        safe.model_params = OldParams()
