"""One way values become JSON: ``to_json`` over dataclass fields, with per-field rules.

A dataclass is written as an object of its fields, in order, each under its camelCase name (or
the snake_case one, for classes that say ``__json_case__ = "snake"``; ``camel`` and ``snake`` are
the one case converter, which the settings' aliases use too), then the properties
marked ``json_property``. What a field needs beyond that is said where it is declared, with
``json_rule``, the field's metadata: another key (a dotted key nests it: ``"usage.inputTokens"``), ``round`` to
that many decimals, ``omit`` (``"none"``, ``"empty"`` for None/[]/{}/"", ``"falsy"``,
``"truthy"``, ``"default"``), ``when`` (a predicate of the object), ``encode`` (applied to the value), or
``skip``. A class-wide ``__json_omit__`` is the ``omit`` of fields that say none. Enums become
their values; lists, tuples and dicts are walked.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from enum import Enum
from typing import Any

_META = "phasewise.json"


def json_rule(*, key: str | None = None, round: int | None = None, omit: str | None = None,
              when: Callable[[Any], bool] | None = None, encode: Callable[[Any], Any] | None = None,
              skip: bool = False) -> dict[str, Any]:
    """A field's JSON rule, as its metadata: ``x: int = field(default=0, metadata=json_rule(round=1))``."""
    return {_META: {"key": key, "round": round, "omit": omit, "when": when, "encode": encode, "skip": skip}}


class json_property(property):
    """A property written to JSON after the fields (``round``/``key``/``omit`` as for fields)."""

    def __init__(self, fget: Callable[[Any], Any] | None = None, *, round: int | None = None,
                 key: str | None = None, omit: str | None = None) -> None:
        super().__init__(fget)
        self.options = (round, key, omit)
        self.rule: dict[str, Any] = {"key": key, "round": round, "omit": omit, "when": None, "encode": None,
                                     "skip": False}

    def __call__(self, fget: Callable[[Any], Any]) -> json_property:
        # used with arguments: @json_property(round=6)
        round_to, key, omit = self.options
        return json_property(fget, round=round_to, key=key, omit=omit)


def camel(name: str) -> str:
    """``api_key_env`` → ``apiKeyEnv``: the one case converter (JSON keys, settings' aliases)."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def snake(name: str) -> str:
    """``apiKeyEnv`` → ``api_key_env``, the way back."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


_NO_RULE: dict[str, Any] = {"key": None, "round": None, "omit": None, "when": None, "encode": None, "skip": False}


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, tuple[str, ...], dict[str, Any], Any], ...]:
    """(attribute, key path, rule, default) for every field and json property of ``cls``."""
    snake = getattr(cls, "__json_case__", "camel") == "snake"
    class_omit = getattr(cls, "__json_omit__", None)
    out = []
    for f in dataclasses.fields(cls):
        rule = {**_NO_RULE, **f.metadata.get(_META, {})}
        if rule["skip"]:
            continue
        if rule["omit"] is None:
            rule["omit"] = class_omit
        key = rule["key"] or (f.name if snake else camel(f.name))
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        out.append((f.name, tuple(key.split(".")), rule, default))
    seen: set[str] = set()
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, json_property) and name not in seen:
                seen.add(name)
                key = value.rule["key"] or (name if snake else camel(name))
                out.append((name, tuple(key.split(".")), value.rule, dataclasses.MISSING))
    return tuple(out)


def _omitted(value: Any, omit: str | None, default: Any) -> bool:
    if omit is None:
        return False
    if omit == "none":
        return value is None
    if omit == "empty":
        return value is None or (isinstance(value, list | tuple | dict | str) and not value)
    if omit == "falsy":
        return not value
    if omit == "truthy":
        return bool(value)
    if omit == "default":
        return value == default
    raise ValueError(f"unknown omit rule {omit!r}")


def to_json(value: Any) -> Any:
    """``value`` as JSON-ready data (see the module docstring)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for attr, path, rule, default in _plan(type(value)):
            item = getattr(value, attr)
            if rule["when"] is not None and not rule["when"](value):
                continue
            if _omitted(item, rule["omit"], default):
                continue
            if rule["encode"] is not None:
                item = rule["encode"](item)
            if rule["round"] is not None and isinstance(item, int | float) and not isinstance(item, bool):
                item = round(float(item), rule["round"])
            target = out
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = to_json(item)
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


class Jsonable:
    """Gives a dataclass ``to_json()``: ``to_json(self)``, the one mechanism for every result."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = to_json(self)
        return out


__all__ = ["Jsonable", "camel", "json_property", "json_rule", "snake", "to_json"]
