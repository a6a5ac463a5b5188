"""How the MCP server's tools take their arguments: errors that never show a value.

The MCP SDK checks a call's arguments against a pydantic model of the tool's signature;
:func:`tool` builds the SDK's tool with that model tightened (values hidden from error
text, unknown arguments refused under a name that reads as one, booleans refused where a
number is due, JSON-valued arguments passed as they came). Used by
:mod:`attune.mcp_server`, which holds the tools themselves.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from pydantic import ConfigDict, field_validator
from pydantic_core import PydanticCustomError


class _Arguments(FuncMetadata):
    """The SDK's argument handling, except that an argument that takes any JSON value
    (``stash``'s ``value``) is passed as it came: the SDK would parse a string holding JSON
    (``"null"``, ``'{"a": 1}'``) into the value it spells, so text that reads as JSON
    was stored as something else, or as nothing.

    An argument the tool does not take is refused under its name, which the error shows,
    only when the name reads as an argument name (``[a-z_]``, as every tool's own are): a
    token or an e-mail address pasted as a *name* is shown as :data:`HIDDEN_NAME`."""

    def pre_parse_json(self, data: dict[str, Any]) -> dict[str, Any]:
        parsed = super().pre_parse_json(data)
        fields = self.arg_model.model_fields
        for name, field in fields.items():
            if field.annotation is Any and name in data:
                parsed[name] = data[name]
        hidden = [n for n in parsed if n not in fields and not _ARGUMENT_NAME.fullmatch(n)]
        for number, name in enumerate(hidden, 1):
            parsed[HIDDEN_NAME if len(hidden) == 1 else f"{HIDDEN_NAME} {number}"] = parsed.pop(
                name
            )
        return parsed


#: What an unknown argument's name is shown as when it does not read as one.
HIDDEN_NAME = "(an argument whose name is not shown)"
_ARGUMENT_NAME = re.compile(r"[a-z_]{1,40}")


def _not_a_boolean(value: Any) -> Any:
    """A number argument given ``true`` / ``false``: refused, as the library refuses a
    bool for a number (pydantic would read it as 1 or 0)."""
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "Input should be a number, not a boolean")
    return value


def _numbers(model: type[ArgModelBase]) -> list[str]:
    """The arguments of ``model`` that take a number (``int``, ``float``, or None)."""
    numeric = {int, float, int | None, float | None}
    return [name for name, field in model.model_fields.items() if field.annotation in numeric]


def tool(fn: Callable[..., Awaitable[dict[str, Any]]]) -> Tool:
    """The SDK's tool for ``fn``, whose argument errors never show a value.

    The SDK checks a call's arguments against a pydantic model of ``fn``'s signature before
    ``fn`` runs, and sends the client pydantic's error text. That text quotes the rejected
    input (``input_value=...``): the wrong-typed value itself, and for a missing argument
    every other argument given -- content, working data, tokens, e-mail addresses. The
    same model with ``hide_input_in_errors`` reports only each argument's name and the
    type expected; the advertised JSON schema and the coercions (``"5"`` for an integer)
    are unchanged. An argument the tool does not take is refused (``extra="forbid"``:
    the error names it, never its value) rather than silently ignored, and a boolean
    where a number is due is refused as the library refuses it."""
    tool = Tool.from_function(fn)
    model = tool.fn_metadata.arg_model
    namespace: dict[str, Any] = {
        "__module__": model.__module__,
        "__doc__": model.__doc__,
        "model_config": ConfigDict(hide_input_in_errors=True, extra="forbid"),
    }
    numbers = _numbers(model)
    if numbers:
        namespace["_numbers_not_booleans"] = field_validator(*numbers, mode="before")(
            _not_a_boolean
        )
    metadata = tool.fn_metadata
    tool.fn_metadata = _Arguments(
        arg_model=cast("type[ArgModelBase]", type(model.__name__, (model,), namespace)),
        output_schema=metadata.output_schema,
        output_model=metadata.output_model,
        wrap_output=metadata.wrap_output,
    )
    tool.parameters["additionalProperties"] = False  # advertised as refused
    return tool
