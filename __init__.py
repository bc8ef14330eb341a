"""labelgate: an information-flow guard for LLM agents, and an agent-safety eval suite.

The names a Python user needs, in one place (every implementation module stays importable as
``labelgate.guard...``, ``labelgate.proxy...``, ``labelgate.evals...``, but nothing here asks you
to know them)::

    import labelgate

    policy = labelgate.load_policy(labelgate.pack_path("default"))
    guard = labelgate.Guard(policy)
    page = guard.label_input(labelgate.InputSpec(text="...", kind="tool_result", tool="fetch"))
    review = await guard.review(labelgate.LLMCall([page]), "answer", [tool_call])

    result = labelgate.run_eval("dilemmas", model="local/smollm2", limit=2)

See docs/python-api.md. Names load lazily (PEP 562), so ``import labelgate`` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labelgate.guard.lazy import lazy_exports

if TYPE_CHECKING:
    from labelgate.evals.api import EvalError, EvalResult, run_eval, run_eval_async
    from labelgate.guard.audit.chain import VerifyReport
    from labelgate.guard.audit.store import AuditStore
    from labelgate.guard.engine import Guard, InputSpec, Review, ToolCallReview, ToolCallSpec
    from labelgate.guard.fingerprint.sqlite_store import SQLiteFingerprintStore
    from labelgate.guard.items import LabeledItem, LabelReason, LLMCall
    from labelgate.guard.labels import Label, Lattice
    from labelgate.guard.models import ChatModel, ChatResult, ModelError, ScriptedModel
    from labelgate.guard.policy.errors import PolicyError
    from labelgate.guard.policy.events import Decision
    from labelgate.guard.policy.model import Policy, load_policy
    from labelgate.guard.policy.spec import Action, SinkKind, SourceKind
    from labelgate.policies import pack_names, pack_path

_EXPORTS = {
    # the guard, in process
    "Guard": "labelgate.guard.engine",
    "InputSpec": "labelgate.guard.engine",
    "ToolCallSpec": "labelgate.guard.engine",
    "Review": "labelgate.guard.engine",
    "ToolCallReview": "labelgate.guard.engine",
    "LLMCall": "labelgate.guard.items",
    "LabeledItem": "labelgate.guard.items",
    "LabelReason": "labelgate.guard.items",
    "Label": "labelgate.guard.labels",
    "Lattice": "labelgate.guard.labels",
    "SQLiteFingerprintStore": "labelgate.guard.fingerprint.sqlite_store",
    # policies
    "Policy": "labelgate.guard.policy.model",
    "load_policy": "labelgate.guard.policy.model",
    "Decision": "labelgate.guard.policy.events",
    "Action": "labelgate.guard.policy.spec",
    "SinkKind": "labelgate.guard.policy.spec",
    "SourceKind": "labelgate.guard.policy.spec",
    "pack_names": "labelgate.policies",
    "pack_path": "labelgate.policies",
    # the audit store
    "AuditStore": "labelgate.guard.audit.store",
    "VerifyReport": "labelgate.guard.audit.chain",
    # models
    "ChatModel": "labelgate.guard.models",
    "ChatResult": "labelgate.guard.models",
    "ScriptedModel": "labelgate.guard.models",
    # evals
    "run_eval": "labelgate.evals.api",
    "run_eval_async": "labelgate.evals.api",
    "EvalResult": "labelgate.evals.api",
    # exceptions
    "PolicyError": "labelgate.guard.policy.errors",
    "ModelError": "labelgate.guard.models",
    "EvalError": "labelgate.evals.api",
}

__all__ = [
    "Action",
    "AuditStore",
    "ChatModel",
    "ChatResult",
    "Decision",
    "EvalError",
    "EvalResult",
    "Guard",
    "InputSpec",
    "LLMCall",
    "Label",
    "LabelReason",
    "LabeledItem",
    "Lattice",
    "ModelError",
    "Policy",
    "PolicyError",
    "Review",
    "SQLiteFingerprintStore",
    "ScriptedModel",
    "SinkKind",
    "SourceKind",
    "ToolCallReview",
    "ToolCallSpec",
    "VerifyReport",
    "load_policy",
    "pack_names",
    "pack_path",
    "run_eval",
    "run_eval_async",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
