"""The sanitizer's copy walk: a fresh copy of a value, cleaned by the SDK's schema.

Every dict and list returned is new, all the way down; a value the input shares is copied
once and shared alike in the copy (as ``copy.deepcopy`` does), and a value that contains
itself raises ``InvalidConversationError``. Where the installed ``openai`` SDK's param
TypedDicts describe a value, the walk follows the schema: bookkeeping fields (the strip list)
go only where the type at that depth does not declare them. Below ``_MAX_DEPTH`` levels of
schema, or where no schema applies, an iterative plain copy takes over. Pure; used by
``_sanitizer``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import typing_extensions
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputItemParam
from pydantic import BaseModel

from ._errors import InvalidConversationError

__all__ = ["CHAT_SCHEMAS", "RESPONSES_SCHEMAS", "Walk", "dump_model"]

_MAX_DEPTH: Final = 64


@cache
def _literal_type(typed_dict: type) -> str | None:
    annotation = typing.get_type_hints(typed_dict).get("type")
    values = [v for v in typing.get_args(annotation) if isinstance(v, str)]
    for arg in typing.get_args(annotation):  # Optional[Literal[...]]
        values.extend(v for v in typing.get_args(arg) if isinstance(v, str))
    return values[0] if len(values) == 1 else None


RESPONSES_SCHEMAS: Final[dict[str, type]] = {
    kind: member
    for member in typing.get_args(ResponseInputItemParam)
    if (kind := _literal_type(member)) is not None and kind != "message"
}
CHAT_SCHEMAS: Final[dict[str, type]] = {
    role: member
    for member in typing.get_args(ChatCompletionMessageParam)
    for role in typing.get_args(typing.get_type_hints(member)["role"])
}


@cache
def _fields(typed_dict: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A TypedDict's field annotations and its required keys.

    ``__required_keys__`` is empty for the SDK's classes (string annotations under
    ``from __future__ import annotations``), so ``Required[...]`` is read from the hints.
    """
    hints = typing.get_type_hints(typed_dict, include_extras=True)
    required = frozenset(
        key
        for key, hint in hints.items()
        if typing.get_origin(hint) in (typing.Required, typing_extensions.Required)
    )
    return typing.get_type_hints(typed_dict), required


def dump_model(model: BaseModel) -> dict[str, Any]:
    # exclude_unset: a model parsed from the API holds exactly what the API sent.
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)


_LEAVES: Final = frozenset({str, int, float, bool, type(None)})  # JSON leaves: shared as they are
_SEQUENCES: Final = (list, Iterable, Sequence)


@dataclass(frozen=True, slots=True, eq=False)
class _Plan:
    """How a value with one annotation is walked; built once per annotation (``_plan``)."""

    typed_dict: type | None = None  # a mapping is cleaned as this TypedDict,
    by_type: Mapping[str | None, type] = field(default_factory=dict)  # or as the one it names
    items: _Plan | None = None  # a list's items are walked along this plan (None: copied)


@cache
def _plan(hint: object) -> _Plan:
    if typing_extensions.is_typeddict(hint):
        return _Plan(typed_dict=typing.cast(type, hint))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in _SEQUENCES and args:
        return _Plan(items=_plan(args[0]))
    if origin is not typing.Union:
        return _Plan()  # opaque: ``object``, a scalar, a ``Dict[str, str]``…
    dicts = [typing.cast(type, m) for m in args if typing_extensions.is_typeddict(m)]
    literals = [_literal_type(m) for m in dicts]
    by_type = {k: m for k, m in zip(literals, dicts, strict=True) if literals.count(k) == 1}
    lists = [_plan(m).items for m in args if typing.get_origin(m) in _SEQUENCES]
    return _Plan(dicts[0] if len(dicts) == 1 else None, by_type, lists[0] if lists else None)


@cache
def _schema(typed_dict: type) -> tuple[dict[str, _Plan], frozenset[str]]:
    """A TypedDict's fields as plans, and its required keys."""
    hints, required = _fields(typed_dict)
    return {key: _plan(hint) for key, hint in hints.items()}, required


_MISSING: Final = object()
_Frame = tuple[object, Any, Iterator[tuple[Any, object]]]  # (source, copy, source's entries)


class Walk:
    """One sanitize call's walk over the caller's values; everything it returns is new.

    Each container (a dict, list, tuple or other mapping) is read once per way of reading it
    (copied, or cleaned as one annotation; in practice once): reached again, it gives the
    result made the first time, so the walk is linear in the number of containers and edges
    even when shared references make the number of paths exponential. Reached from inside
    itself, it is part of a cycle: ``InvalidConversationError``. ``value``/``mapping`` follow
    the SDK annotation (at most ``_MAX_DEPTH`` levels; the schema is shallower) and drop
    bookkeeping the schema does not declare; ``copy`` copies as it is, iteratively, any depth.
    """

    def __init__(self, strip: frozenset[str]) -> None:
        self.strip = strip
        self.index: int | None = None  # the item being read, for errors
        self._done: dict[object, dict[int, object]] = {}  # how read -> id -> result
        self._open: set[int] = set()  # the containers being read: the path to the current one
        self._held: list[object] = []  # dumped models: holding them keeps their ids unique

    def _dump(self, model: BaseModel) -> dict[str, Any]:
        """``model`` as a dict, held for the walk so that its id stays unique."""
        self._held.append(dumped := dump_model(model))
        return dumped

    def _enter(self, node: object, how: object) -> object:
        """The earlier result for ``node`` read ``how``, or ``_MISSING`` (it is then open).

        Raises:
            InvalidConversationError: ``node`` is open (an ancestor of itself): a cycle.
        """
        if id(node) in self._open:
            raise InvalidConversationError(
                f"a {type(node).__name__} contains itself (a cycle)", index=self.index
            )
        table = self._done.get(how)
        if table is None:
            table = self._done[how] = {}
        done = table.get(id(node), _MISSING)
        if done is _MISSING:
            self._open.add(id(node))
        return done

    def _leave(self, node: object, how: object, result: object) -> None:
        self._open.discard(id(node))
        self._done[how][id(node)] = result

    def copy(self, value: object) -> object:
        """A copy of ``value`` whose every dict and list is new (tuples become lists).

        Raises:
            InvalidConversationError: ``value`` contains itself.
        """
        root, frame = self._start(value)
        stack = [frame] if frame is not None else []
        while stack:
            node, out, children = stack[-1]
            for key, child in children:
                out[key], frame = self._start(child)
                if frame is not None:
                    stack.append(frame)
                    break  # fill the child first
            else:
                stack.pop()
                self._leave(node, None, out)
        return root

    def _start(self, value: object) -> tuple[object, _Frame | None]:
        """``value`` copied (a leaf, an earlier copy), or a new container and what fills it."""
        if type(value) in _LEAVES:
            return value, None
        if isinstance(value, BaseModel):
            value = self._dump(value)
        if not isinstance(value, Mapping | list | tuple):
            return value, None
        if (done := self._enter(value, None)) is not _MISSING:
            return done, None
        if isinstance(value, Mapping):
            out: Any = {}
            return out, (value, out, iter(value.items()))
        out = [None] * len(value)
        return out, (value, out, enumerate(value))

    def item(self, item: dict[str, Any], typed_dict: type | None) -> dict[str, Any]:
        """A top-level item (a fresh copy, never shared) cleaned as ``typed_dict`` (or ``None``)."""
        self._open.add(id(item))
        if typed_dict is not None:
            out = self._clean(item, typed_dict, 0)
        else:
            out = {k: self.copy(v) for k, v in item.items() if k not in self.strip}
        self._open.discard(id(item))
        return out

    def mapping(self, value: Mapping[Any, Any], typed_dict: type, depth: int) -> dict[str, Any]:
        """``value`` cleaned as ``typed_dict``, once."""
        if (done := self._enter(value, typed_dict)) is not _MISSING:
            return typing.cast("dict[str, Any]", done)
        out = self._clean(value, typed_dict, depth)
        self._leave(value, typed_dict, out)
        return out

    def _clean(self, value: Mapping[Any, Any], typed_dict: type, depth: int) -> dict[str, Any]:
        """Undeclared bookkeeping and optional nulls go; declared fields are walked."""
        plans, required = _schema(typed_dict)
        out: dict[str, Any] = {}
        for key, item in value.items():
            plan = plans.get(key)
            if plan is not None:
                if item is None and key not in required:
                    continue  # null for "absent"
                out[key] = self.value(item, plan, depth + 1)
            elif key not in self.strip:
                out[key] = self.copy(item)
        return out

    def value(self, value: object, plan: _Plan, depth: int) -> object:
        """``value`` cleaned along ``plan`` (a copy where the annotation says nothing)."""
        if type(value) in _LEAVES:
            return value
        if isinstance(value, BaseModel):
            value = self._dump(value)
        if depth >= _MAX_DEPTH:
            return self.copy(value)
        if isinstance(value, Mapping):
            kind = value.get("type")
            typed_dict = plan.by_type.get(kind) if kind is None or isinstance(kind, str) else None
            if (typed_dict := typed_dict or plan.typed_dict) is not None:
                return self.mapping(value, typed_dict, depth)
        elif plan.items is not None and isinstance(value, list | tuple):
            if (done := self._enter(value, plan)) is not _MISSING:
                return done
            out = [self.value(item, plan.items, depth + 1) for item in value]
            self._leave(value, plan, out)
            return out
        return self.copy(value)
