"""VS Code's ``contributes.configuration``, generated from the settings model so the two cannot drift.

    python -m phasewise.settings.schema --vscode           # print it
    python -m phasewise.settings.schema --vscode --write editors/vscode/package.json

Each top-level field of ``phasewise.settings.Settings`` becomes one ``phasewise.<field>``
property with its JSON schema inlined (VS Code cannot follow ``$ref`` inside a contribution),
its description as Markdown, its default, and, where it helps, the catalogue's provider ids
and model references as examples. ``security``, ``network`` and ``ledgerPath``
(``USER_LEVEL_FIELDS``) are ``application``-scoped, so VS Code reads them from user settings
only; every other property is ``resource``-scoped (pulled per document). A model reference accepts the string form
``"provider/model"`` as well as the object the pydantic schema shows. Properties under
``phasewise.server.`` and ``phasewise.trace.`` belong to the extension itself (how to start the
server, protocol tracing): they are kept from the existing package.json as they are, and the
extension strips them before answering the server's configuration pulls.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from phasewise.providers.catalogue import BUILTIN, known_ids
from phasewise.settings.model import BUILTIN_PHASES, SECTION, USER_LEVEL_FIELDS, ModelRef, Settings

CLIENT_PREFIXES = (f"{SECTION}.server.", f"{SECTION}.trace.")
TITLE = "Phasewise"
_REF = "#/$defs/"
_MODEL_REF = ModelRef.__name__
_MODEL_REF_PATTERN = r"^[^/\s]+/\S.*$"


def _model_classes(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every pydantic model reachable from ``root``'s fields, by class name (the ``$defs`` keys)."""
    found: dict[str, type[BaseModel]] = {}

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ not in found:
                found[tp.__name__] = tp
                for field in tp.model_fields.values():
                    walk(field.annotation)
            return
        for arg in typing.get_args(tp):
            walk(arg)

    walk(root)
    return found


def _field_defaults(cls: type[BaseModel]) -> dict[str, Any]:
    """Defaults of ``cls``'s optional fields by alias, default factories included."""
    out: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        if field.is_required():
            continue
        value = field.get_default(call_default_factory=True, validated_data={})
        if isinstance(value, BaseModel):
            value = value.model_dump(by_alias=True, mode="json")
        out[field.alias or name] = json.loads(json.dumps(value, default=str))
    return out


def _model_ref_examples() -> list[str]:
    """One ``provider/model`` per catalogue provider that lists models (its first one)."""
    return [f"{spec.id}/{next(iter(spec.models))}" for spec in BUILTIN.values() if spec.models]


def _string_model_ref() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": _MODEL_REF_PATTERN,
        "patternErrorMessage": "Expected a model reference '<provider>/<model-id>', "
        "e.g. 'anthropic/claude-sonnet-4-5'.",
        "markdownDescription": "`provider/model`, split at the first slash "
        "(`openrouter/anthropic/claude-sonnet-4.5` is provider `openrouter`).",
        "examples": _model_ref_examples(),
    }


class _Inliner:
    """Turns pydantic's JSON schema into what a VS Code contribution can hold."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.defaults = {name: _field_defaults(cls) for name, cls in _model_classes(Settings).items()}

    def convert(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            name = node["$ref"].removeprefix(_REF)
            body = self._definition(name)
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return {**body, **self.convert(extra)}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title":
                continue
            if key == "description":
                out["markdownDescription"] = value
            elif key in {"properties", "$defs"}:
                out[key] = {name: self.convert(sub) for name, sub in value.items()}
            else:
                out[key] = self.convert(value)
        if "anyOf" in out:
            out["anyOf"] = _drop_subsumed_strings(list(_flatten_any_of(out["anyOf"])))
        return out

    def _definition(self, name: str) -> dict[str, Any]:
        body = self.convert(copy.deepcopy(self.defs[name]))
        for prop, default in self.defaults.get(name, {}).items():
            body.get("properties", {}).get(prop, {}).setdefault("default", default)
        if name == _MODEL_REF:
            body["properties"]["provider"]["examples"] = known_ids()
            return {"anyOf": [_string_model_ref(), body]}
        return body


def _js_numbers(node: Any) -> Any:
    """``60.0`` → ``60``: as JavaScript writes it, so npm rewriting package.json changes nothing."""
    if isinstance(node, float) and node.is_integer():
        return int(node)
    if isinstance(node, dict):
        return {k: _js_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_js_numbers(v) for v in node]
    return node


def _drop_subsumed_strings(options: list[Any]) -> list[Any]:
    """A bare ``{"type": "string"}`` next to a described string form (``ModelRef``'s input type
    beside the patterned reference) would let any string through without the pattern's message."""
    described = any(isinstance(o, dict) and o.get("type") == "string" and len(o) > 1 for o in options)
    if not described:
        return options
    return [o for o in options if o != {"type": "string"}]


def _flatten_any_of(options: list[Any]) -> Iterator[Any]:
    for option in options:
        if isinstance(option, dict) and set(option) == {"anyOf"}:
            yield from _flatten_any_of(option["anyOf"])
        else:
            yield option


def _provider_catalogue_note() -> str:
    rows = ", ".join(f"`{pid}`" for pid in known_ids())
    return f" Catalogue ids: {rows}. Any other id declares a new provider (`protocol`, `baseUrl`, `apiKeyEnv`)."


def server_properties() -> dict[str, Any]:
    """The ``phasewise.*`` properties derived from the settings model, in field order."""
    schema = Settings.model_json_schema(by_alias=True)
    inliner = _Inliner(schema.get("$defs", {}))
    defaults = Settings().model_dump(by_alias=True, mode="json")
    props: dict[str, Any] = {}
    for order, (alias, raw) in enumerate(schema["properties"].items()):
        prop = inliner.convert(raw)
        prop.setdefault("default", defaults.get(alias))
        if alias == "phases":
            phase = prop["additionalProperties"]
            prop["properties"] = {name: copy.deepcopy(phase) for name in BUILTIN_PHASES}
        elif alias == "providers":
            prop["markdownDescription"] += _provider_catalogue_note()
        # Where keys may go, how connections are checked and where Phasewise writes outside the
        # workspace are the user's decisions: VS Code ignores workspace values of an
        # application-scoped setting, so a repository's .vscode/settings.json cannot set them.
        prop["scope"] = "application" if alias in USER_LEVEL_FIELDS else "resource"
        prop["order"] = order
        props[f"{SECTION}.{alias}"] = _js_numbers(prop)
    return props


def is_client_property(name: str) -> bool:
    return name.startswith(CLIENT_PREFIXES)


def vscode_configuration(existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """``contributes.configuration``: the server's properties, then the extension's own ones
    (kept from ``existing``, the package.json's current configuration)."""
    props = server_properties()
    kept = (existing or {}).get("properties", {})
    props.update({name: value for name, value in kept.items() if is_client_property(name)})
    return {"title": TITLE, "properties": props}


def update_package_json(path: Path) -> bool:
    """Rewrite ``path``'s configuration; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    package = json.loads(text)
    contributes = package.setdefault("contributes", {})
    contributes["configuration"] = vscode_configuration(contributes.get("configuration"))
    new_text = json.dumps(package, indent=2, ensure_ascii=False) + "\n"
    if new_text == text:
        return False
    path.write_text(new_text, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phasewise.settings.schema", description=__doc__.split("\n")[0])
    parser.add_argument("--vscode", action="store_true", help="VS Code's contributes.configuration (default)")
    parser.add_argument("--write", metavar="PACKAGE_JSON", type=Path,
                        help="update this package.json in place instead of printing")
    args = parser.parse_args(argv)
    if args.write is not None:
        changed = update_package_json(args.write)
        print(f"{args.write}: {'updated' if changed else 'already up to date'}")
        return 0
    json.dump(vscode_configuration(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


__all__ = ["CLIENT_PREFIXES", "is_client_property", "server_properties", "update_package_json",
           "vscode_configuration"]

if __name__ == "__main__":
    raise SystemExit(main())
