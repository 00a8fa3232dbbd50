"""The argument contract: JSON values or pydantic models in, the function's own types out.

On enqueue, every argument is turned into plain JSON values (pydantic models are dumped), or
rejected with a TypeError naming it. When the task runs (first time or after a restart) the
stored values are validated against the function's type hints, so a `datetime`, `UUID`,
`Decimal` or pydantic model arrives as its own type. Nothing is ever stored as a `repr`.

Each argument is bounded (`max_argument_bytes`, 64 KB by default, as JSON): a task row is read
by workers and shown by the admin, so a large payload belongs in a file or table of its own,
with its id as the argument.
"""

from __future__ import annotations

import inspect
import json
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

logger = logging.getLogger("taskflow.arguments")

JSONArguments = dict[str, Any]  # {"args": [...], "kwargs": {...}}

DEFAULT_MAX_ARGUMENT_BYTES = 64 * 1024

# The arguments of every call without any: one shared value, read and never changed (a fresh
# dict and list per task were three more objects for the garbage collector to walk).
NO_ARGUMENTS: JSONArguments = {"args": [], "kwargs": {}}


class ArgumentError(TypeError):
    """An argument cannot be stored as JSON, or stored values no longer fit the function."""


class TaskResultInvalid(ValueError):
    """A stored result does not match its task's return type hint (the message says how)."""


# The return hint of a function that has none (`None` is a hint of its own: "returns None").
NO_HINT: Any = inspect.Parameter.empty


def _jsonable(value: Any, where: str) -> Any:
    try:
        plain = to_jsonable_python(value, fallback=None, serialize_unknown=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise ArgumentError(
            f"{where} is a {type(value).__name__}, which cannot be stored as JSON: pass JSON values "
            f"(str, int, float, bool, None, lists, dicts), datetime/UUID/Decimal, or a pydantic model"
        ) from exc
    try:
        json.dumps(plain, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ArgumentError(f"{where} cannot be stored as JSON: {exc}") from exc
    return plain


def _bounded(value: Any, where: str, limit: int) -> Any:
    plain = _jsonable(value, where)
    _check_size(plain, where, limit)
    return plain


def _check_size(plain: Any, where: str, limit: int) -> None:
    """Refuse an argument whose JSON is over `limit` bytes (numbers and short text are not measured)."""
    if plain is None or isinstance(plain, bool | int | float):
        return
    if isinstance(plain, str) and len(plain) * 6 + 2 <= limit:
        return  # even if every character were escaped as \uXXXX it would fit
    size = len(_ENCODER.encode(plain).encode("utf-8"))
    if size > limit:
        raise ArgumentError(
            f"{where} is {size} bytes as JSON, over the limit of {limit} bytes (max_argument_bytes): "
            "store large data elsewhere (a file, a table) and pass its id"
        )


@dataclass(frozen=True)
class Signature:
    """A function's parameters and a validator for each, built once per task."""

    signature: inspect.Signature | None
    adapters: dict[str, TypeAdapter[Any]]
    # What the function's return type hint says; its validator is built the first time a result
    # is read (most tasks' results never are, and some hints are types pydantic cannot validate).
    return_hint: Any = field(default=NO_HINT, compare=False)

    @property
    def takes_no_arguments(self) -> bool:
        return self.signature is not None and not self.signature.parameters

    @classmethod
    def of(cls, func: Callable[..., Any]) -> Signature:
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return cls(None, {})
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception as exc:  # e.g. a hint naming a class local to a function
            logger.warning(
                "taskflow: the type hints of %s cannot be resolved (%s); its arguments will arrive as plain "
                "JSON values. Define the types it names at module level.",
                getattr(func, "__qualname__", func),
                exc,
            )
            hints = {}
        adapters = {}
        for name, parameter in signature.parameters.items():
            hint = hints.get(name)
            if hint is None or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            adapters[name] = TypeAdapter(hint)
        return cls(signature, adapters, hints.get("return", NO_HINT))

    def dump(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        max_bytes: int = DEFAULT_MAX_ARGUMENT_BYTES,
    ) -> JSONArguments:
        """Check that the call fits the function and turn every argument into JSON values,
        each at most `max_bytes` as JSON."""
        if not args and not kwargs and self.takes_no_arguments:
            return NO_ARGUMENTS
        if self.signature is not None:
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise ArgumentError(f"task {name!r} cannot be called with these arguments: {exc}") from exc
            names = list(bound.arguments)
        else:
            names = []
        plain_args = []
        for index, value in enumerate(args):
            label = names[index] if index < len(names) else f"#{index}"
            plain_args.append(_bounded(value, f"argument {label!r} of task {name!r}", max_bytes))
        plain_kwargs = {
            key: _bounded(value, f"argument {key!r} of task {name!r}", max_bytes) for key, value in kwargs.items()
        }
        return {"args": plain_args, "kwargs": plain_kwargs}

    def load(self, name: str, stored: JSONArguments) -> tuple[list[Any], dict[str, Any]]:
        """Validate stored JSON values against the type hints; return call-ready args and kwargs."""
        if self.signature is None or not self.adapters:
            # Nothing to validate: the call unpacks them, so the stored ones serve as they are.
            return stored.get("args", []), stored.get("kwargs", {})
        args = list(stored.get("args", []))
        kwargs = dict(stored.get("kwargs", {}))
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"stored arguments no longer fit task {name!r}: {exc}") from exc
        positional = [
            p.name for p in self.signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        # Keep the caller's split between positional and keyword arguments; validate each value.
        args = [
            self._validate(name, positional[i], value) if i < len(positional) else value for i, value in enumerate(args)
        ]
        kwargs = {key: self._validate(name, key, value) for key, value in kwargs.items()}
        return args, kwargs

    @cached_property
    def _returns(self) -> TypeAdapter[Any] | None:
        return None if self.return_hint is NO_HINT else TypeAdapter(self.return_hint)

    def load_result(self, name: str, stored: str | None) -> Any:
        """A stored result as the return type hint says (a function without one: plain JSON values).

        A stored null is the task's `None`. A result that was not JSON-able is stored as
        {"unserialisable": ...} and a too long one as {"truncated": ...}: neither matches a hint.
        """
        text = "null" if stored is None else stored
        try:
            returns = self._returns
        except Exception as exc:  # a hint pydantic cannot validate (an arbitrary class)
            raise TaskResultInvalid(
                f"the return type hint of task {name!r} ({self.return_hint!r}) cannot validate a stored result: {exc}"
            ) from exc
        if returns is None:
            return json.loads(text)
        try:
            return returns.validate_json(text)
        except ValidationError as exc:
            raise TaskResultInvalid(
                f"the stored result of task {name!r} does not match its return type hint {self.return_hint!r}: {exc}"
            ) from exc

    def _validate(self, task: str, parameter: str, value: Any) -> Any:
        adapter = self.adapters.get(parameter)
        if adapter is None:
            return value
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            raise ArgumentError(f"argument {parameter!r} of task {task!r} does not match its type hint: {exc}") from exc


# One encoder, built once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_NO_ARGUMENTS = '{"args":[],"kwargs":{}}'


def encode(arguments: JSONArguments) -> str:
    if not arguments["args"] and not arguments["kwargs"]:
        return _NO_ARGUMENTS
    return _ENCODER.encode(arguments)


def decode(text: str) -> JSONArguments:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"args": [], "kwargs": {}}


def encode_value(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)


def encode_logs(records: list[dict[str, str]]) -> str:
    return json.dumps(records, separators=(",", ":"))
