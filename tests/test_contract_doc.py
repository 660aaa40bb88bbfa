"""docs/contract.md is complete: every setting of the settings model, every command the server
registers (with each of its arguments), every field of a result and a problem, every problem kind
and every ``phasewise/…`` notification appears in it.

Names are looked for as the page writes them, in backticks: settings by their camelCase path under
the ``phasewise`` section (as ``python -m phasewise.settings.schema`` names them), a map's key as a
placeholder (``phases.<phase>.agent.maxSteps``).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from pydantic import BaseModel

from phasewise.edge.setup import create_server
from phasewise.phases.documents import Finding
from phasewise.phases.results import PhaseResult
from phasewise.problems import Problem, ProblemKind
from phasewise.router.router import Attempt
from phasewise.serial import _META, camel, json_property
from phasewise.settings.model import ModelRef, Settings
from phasewise.workflows.runs import RunOutcome

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "docs" / "contract.md"
SERVER = ROOT / "server" / "phasewise"
# The placeholder each map of the settings is written with (a new map needs one here).
PLACEHOLDERS = {"phases": "<phase>", "providers": "<provider>", "models": "<model>", "commands": "<name>"}


@pytest.fixture(scope="module")
def contract() -> str:
    return CONTRACT.read_text(encoding="utf-8")


def _models_in(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
        return
    for arg in typing.get_args(tp):
        yield from _models_in(arg)


def _is_map(tp: Any) -> bool:
    return any(typing.get_origin(t) is dict for t in (tp, *typing.get_args(tp)))


def setting_paths(cls: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    """Every setting's path, by alias, walking nested models (a model reference is a value)."""
    for name, field in cls.model_fields.items():
        key = field.alias or name
        path = prefix + key
        yield path
        inner = [m for m in _models_in(field.annotation) if m is not ModelRef]
        if not inner:
            continue
        if _is_map(field.annotation):
            assert key in PLACEHOLDERS, f"settings map {path}: add its placeholder to PLACEHOLDERS"
            path = f"{path}.{PLACEHOLDERS[key]}"
        for model in inner:
            yield from setting_paths(model, path + ".")


def registered_commands() -> dict[str, Any]:
    """Every command the server registers, with the handler pygls calls."""
    return dict(create_server().protocol.fm.commands)


def _args_type(handler: Any, depth: int = 0) -> type[Any] | None:
    """The argument class a handler converts to (``register_command``'s ``args_type``), found in
    the closures of the handler and of what wraps it."""
    for cell in getattr(handler, "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, type) and attrs.has(value) and hasattr(value, "EXPECTED"):
            return value
        if callable(value) and depth < 3 and (found := _args_type(value, depth + 1)):
            return found
    return None


def json_keys(cls: type[Any]) -> list[str]:
    """The JSON keys a ``Jsonable`` dataclass is written with (``serial.to_json``'s rules)."""
    keys = []
    for field in dataclasses.fields(cls):
        rule = field.metadata.get(_META, {})
        if not rule.get("skip"):
            keys.append(rule.get("key") or camel(field.name))
    for name in dir(cls):
        attr = getattr(cls, name, None)
        if isinstance(attr, json_property):
            keys.append(attr.rule.get("key") or camel(name))
    return keys


def test_every_setting_is_in_the_contract(contract: str) -> None:
    paths = list(setting_paths())
    assert "phases.<phase>.agent.maxSteps" in paths and "providers.<provider>.models.<model>.toolCalling" in paths
    missing = [p for p in paths if f"`{p}`" not in contract]
    assert not missing, f"settings missing from docs/contract.md: {missing}"
    for field in ModelRef.model_fields.values():  # the object form of a model reference
        assert f"`{field.alias}`" in contract


def test_every_registered_command_and_its_arguments_are_in_the_contract(contract: str) -> None:
    commands = registered_commands()
    assert {"phasewise.plan", "phasewise.run", "phasewise.status", "phasewise.dismissFinding"} <= set(commands)
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(phasewise\.\w+)` \|.*$", contract, re.M)}
    missing = [c for c in commands if c not in rows]
    assert not missing, f"commands missing from docs/contract.md's table: {missing}"
    for command, handler in commands.items():
        args = _args_type(handler)
        assert args is not None, f"{command}: its argument class was not found"
        row = rows[command].split("|")[2]
        absent = [f.name for f in attrs.fields(args) if not re.search(rf"\b{f.name}\b", row)]
        assert not absent, f"{command}: arguments {absent} of {args.__name__} missing from its row"


@pytest.mark.parametrize("cls", [PhaseResult, Problem, Attempt, RunOutcome, Finding])
def test_every_result_field_is_in_the_contract(contract: str, cls: type[Any]) -> None:
    missing = [k for k in json_keys(cls)
               if not re.search(rf"\b{re.escape(k.rsplit('.', 1)[-1])}\b", contract)]
    assert not missing, f"{cls.__name__} fields missing from docs/contract.md: {missing}"


def test_every_problem_kind_is_in_the_contract(contract: str) -> None:
    missing = [k.value for k in ProblemKind if f"| `{k.value}` |" not in contract]
    assert not missing, f"problem kinds missing from docs/contract.md's table: {missing}"


def test_every_phasewise_notification_is_in_the_contract(contract: str) -> None:
    methods = {m for path in SERVER.rglob("*.py")
               for m in re.findall(r"[\"'](phasewise/\w+)[\"']", path.read_text(encoding="utf-8"))}
    assert {"phasewise/streamText", "phasewise/step", "phasewise/setKeys"} <= methods
    missing = sorted(m for m in methods if f"`{m}`" not in contract)
    assert not missing, f"notifications missing from docs/contract.md: {missing}"


def test_contract_names_the_capabilities_sources_and_deadlines(contract: str) -> None:
    for name in ("experimental.phasewise", "clientCommands", "setKeyCommand", "phasewise-<phase>",
                 "Source `phasewise`", "wait: true", "started: true", "PHASEWISE_REPLY_SECONDS", "phasewise.json"):
        assert name in contract, name
