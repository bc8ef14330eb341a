"""Tools as plain Python functions over the ``World``, with OpenAI tool schemas derived from
their signatures (pydantic), registered by name with ``@tool``.

A tool takes the world first and keyword arguments after; its docstring's first paragraph
is the description the agent reads. Bad arguments come back to the agent as text.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ValidationError, create_model

from labelgate.evals.environment import State, Tool, ToolError
from labelgate.evals.injection.world import World

ToolImpl = Callable[..., str]
WORLD_KEY = "world"


@dataclass(frozen=True, slots=True)
class ToolDef:
    name: str
    description: str
    impl: ToolImpl
    params: type[BaseModel]
    effect: str  # read | write | external: documentation (the guard's policy decides its own)

    def schema(self) -> dict[str, Any]:
        schema = self.params.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    def run(self, world: World, arguments: dict[str, Any]) -> str:
        try:
            parsed = self.params.model_validate(arguments)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "arguments"
            raise ToolError(f"{self.name}: {where}: {first['msg']}") from None
        return self.impl(world, **parsed.model_dump())

    def as_tool(self) -> Tool:
        def fn(state: State, arguments: dict[str, Any]) -> str:
            world = state[WORLD_KEY]
            assert isinstance(world, World)
            return self.run(world, arguments)

        return Tool(self.name, self.description, fn, self.schema())


REGISTRY: dict[str, ToolDef] = {}


def tool(effect: str) -> Callable[[ToolImpl], ToolImpl]:
    """Register a tool function under its own name."""

    def register(fn: ToolImpl) -> ToolImpl:
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for name, param in list(inspect.signature(fn).parameters.items())[1:]:
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[name] = (hints[name], default)
        params = create_model(f"{fn.__name__}_args", __config__={"extra": "forbid"}, **fields)
        doc = inspect.getdoc(fn) or fn.__name__
        description = doc.split("\n\n")[0].replace("\n", " ")
        if fn.__name__ in REGISTRY:
            raise ValueError(f"tool {fn.__name__} registered twice")
        REGISTRY[fn.__name__] = ToolDef(fn.__name__, description, fn, params, effect)
        return fn

    return register


def tools_named(names: list[str]) -> list[Tool]:
    missing = [n for n in names if n not in REGISTRY]
    if missing:
        raise KeyError(f"unknown tools: {missing}")
    return [REGISTRY[n].as_tool() for n in names]


def lines(rows: list[str], empty: str = "nothing found") -> str:
    return "\n".join(rows) if rows else empty
