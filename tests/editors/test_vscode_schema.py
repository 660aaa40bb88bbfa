"""The VS Code extension's settings are generated from the server's settings model.

Fails when ``editors/vscode/package.json`` and ``phasewise.settings.schema`` disagree; the fix is
``python -m phasewise.settings.schema --vscode --write editors/vscode/package.json``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from phasewise.providers.catalogue import known_ids
from phasewise.settings import SECTION, USER_LEVEL_FIELDS, Settings
from phasewise.settings.schema import is_client_property, server_properties, update_package_json, vscode_configuration

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "editors" / "vscode" / "package.json"
REGENERATE = "python -m phasewise.settings.schema --vscode --write editors/vscode/package.json"


def _package() -> dict[str, Any]:
    package: dict[str, Any] = json.loads(PACKAGE.read_text(encoding="utf-8"))
    return package


def test_package_json_configuration_is_the_generated_one() -> None:
    current = _package()["contributes"]["configuration"]
    assert current == vscode_configuration(current), f"package.json's configuration drifted: run `{REGENERATE}`"


def test_every_settings_field_is_a_documented_property_with_its_default() -> None:
    props = server_properties()
    defaults = Settings().model_dump(by_alias=True, mode="json")
    aliases = [field.alias or name for name, field in Settings.model_fields.items()]
    assert list(props) == [f"{SECTION}.{alias}" for alias in aliases]
    for alias in aliases:
        prop = props[f"{SECTION}.{alias}"]
        assert prop["markdownDescription"], alias
        assert prop["default"] == defaults[alias], alias
        # pulled per document URI, except where keys may go: user settings only (VS Code ignores workspace values)
        assert prop["scope"] == ("application" if alias in USER_LEVEL_FIELDS else "resource"), alias
    assert "$ref" not in json.dumps(props) and "$defs" not in json.dumps(props)  # VS Code cannot follow them


def test_where_keys_may_go_and_where_phasewise_writes_are_user_level_only_in_vscode() -> None:
    props = _package()["contributes"]["configuration"]["properties"]
    assert set(USER_LEVEL_FIELDS) == {"security", "network", "ledgerPath"}
    for alias in USER_LEVEL_FIELDS:
        assert props[f"{SECTION}.{alias}"]["scope"] == "application", alias
    security = props[f"{SECTION}.security"]["properties"]["allowedKeyOrigins"]
    assert security["default"] == [] and "user-level" in security["markdownDescription"]
    network = props[f"{SECTION}.network"]["properties"]
    assert set(network) == {"caBundle", "proxy"}
    assert all(p["markdownDescription"] for p in network.values())
    assert all(p["scope"] == "resource" for name, p in props.items()
               if name.startswith(f"{SECTION}.") and name.removeprefix(f"{SECTION}.") in
               {f.alias or n for n, f in Settings.model_fields.items()} - set(USER_LEVEL_FIELDS))


def test_nested_fields_keep_descriptions_enums_and_defaults() -> None:
    props = server_properties()
    phase = props[f"{SECTION}.phases"]["additionalProperties"]
    assert set(props[f"{SECTION}.phases"]["properties"]) == {"plan", "code", "review"}
    assert phase["additionalProperties"] is False
    edit_format = phase["properties"]["editFormat"]
    assert {"enum": ["search-replace", "whole", "tool", "text"], "type": "string"} in edit_format["anyOf"]
    assert edit_format["default"] is None and "search-replace" in edit_format["markdownDescription"]
    assert phase["properties"]["contextTokens"]["default"] == 8000
    assert "rate-limit" in phase["properties"]["fallbackOn"]["items"]["enum"]
    assert phase["properties"]["fallbackOn"]["default"] == ["rate-limit", "overloaded", "server-error", "network",
                                                            "timeout"]
    assert phase["properties"]["fallbacks"]["default"] == []
    provider = props[f"{SECTION}.providers"]["additionalProperties"]
    protocol = provider["properties"]["protocol"]["anyOf"]
    assert {"enum": ["openai", "anthropic"], "type": "string"} in protocol
    assert all(f"`{pid}`" in props[f"{SECTION}.providers"]["markdownDescription"] for pid in known_ids())
    retry = props[f"{SECTION}.retry"]["properties"]["maxAttempts"]
    assert (retry["default"], retry["minimum"], retry["maximum"]) == (3, 1, 10)
    assert all("markdownDescription" in p for p in provider["properties"].values())


def test_model_references_accept_the_string_form_with_catalogue_examples() -> None:
    model = server_properties()[f"{SECTION}.phases"]["properties"]["code"]["properties"]["model"]
    string, obj = (o for o in model["anyOf"] if o.get("type") in {"string", "object"})
    pattern = re.compile(string["pattern"])
    assert pattern.match("zai/glm-4.7") and pattern.match("openrouter/anthropic/claude-sonnet-4.5")
    assert not pattern.match("glm-4.7") and not pattern.match("/glm")
    assert "anthropic/claude-opus-4-5" in string["examples"]
    assert all(ref.partition("/")[0] in known_ids() for ref in string["examples"])
    assert obj["required"] == ["provider", "model"]
    assert obj["properties"]["provider"]["examples"] == known_ids()
    assert {"type": "null"} in model["anyOf"]


def test_client_settings_are_marked_and_restricted_in_untrusted_workspaces() -> None:
    package = _package()
    props = package["contributes"]["configuration"]["properties"]
    client = [name for name in props if is_client_property(name)]
    assert set(client) == {"phasewise.server.command", "phasewise.server.pythonPath", "phasewise.trace.server"}
    for name in client:
        assert props[name]["markdownDescription"].startswith("**Client setting**"), name
    trust = package["capabilities"]["untrustedWorkspaces"]
    assert trust["supported"] == "limited"
    assert {"phasewise.server.command", "phasewise.server.pythonPath", "phasewise.providers"} <= set(
        trust["restrictedConfigurations"])
    assert set(trust["restrictedConfigurations"]) <= set(props)


def test_commands_the_server_names_in_quick_fixes_are_contributed() -> None:
    package = _package()
    contributed = {c["command"] for c in package["contributes"]["commands"]}
    palette = {"phasewise.plan", "phasewise.code", "phasewise.review", "phasewise.run", "phasewise.status",
               "phasewise.verify", "phasewise.compare", "phasewise.setApiKey", "phasewise.restartServer"}
    assert palette <= contributed
    assert {"phasewise.setApiKey", "phasewise.openSettings", "phasewise.retry"} <= contributed
    assert all(c["category"] == "Phasewise" for c in package["contributes"]["commands"])
    types_vscode = package["devDependencies"]["@types/vscode"]
    assert types_vscode.lstrip("^~") <= package["engines"]["vscode"].lstrip("^~")  # vsce refuses newer types


def test_write_is_idempotent_and_the_cli_prints_the_same(tmp_path: Path) -> None:
    copy = tmp_path / "package.json"
    copy.write_text(PACKAGE.read_text(encoding="utf-8"), encoding="utf-8")
    assert update_package_json(copy) is False  # already generated: nothing to change
    broken = json.loads(copy.read_text())
    broken["contributes"]["configuration"]["properties"].pop(f"{SECTION}.retry")
    copy.write_text(json.dumps(broken))
    assert update_package_json(copy) is True
    assert json.loads(copy.read_text())["contributes"]["configuration"] == _package()["contributes"]["configuration"]
    out = subprocess.run([sys.executable, "-m", "phasewise.settings.schema", "--vscode"], capture_output=True,
                         text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == vscode_configuration()
