"""Settings for the command line: the same ``phasewise`` section the editor uses, from a file.

Where ``phasewise run FILE`` (and every other command) finds its settings, first found wins:

1. ``--settings PATH``: a JSON (or JSONC) file holding the ``phasewise`` section, or a
   ``{"phasewise": {...}}`` object, or VS Code's dotted keys (``"phasewise.phases": {...}``).
2. Walking up from FILE's folder (or the current folder) to the root, in each folder:
   ``phasewise.json``, then ``.vscode/settings.json``. A file without a ``phasewise`` section
   is passed over, so a workspace's unrelated VS Code settings do not hide a parent's.
3. Nothing: the defaults (every phase on Anthropic's Claude).

VS Code's settings files are JSONC: comments and trailing commas are accepted.
May not import: edge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasewise.settings import SECTION, LoadedSettings, Settings, load_settings

CANDIDATES = ("phasewise.json", ".vscode/settings.json")


class SettingsFileError(ValueError):
    """A settings file that cannot be read or parsed (the message names the file and why)."""


def strip_jsonc(text: str) -> str:
    """JSON from JSONC: ``//`` and ``/* */`` comments and trailing commas removed (not in strings)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i += 1  # a trailing comma
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _fields() -> set[str]:
    names: set[str] = set()
    for name, info in Settings.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
    return names


def section_of(data: Any, *, bare_allowed: bool) -> Any | None:
    """The ``phasewise`` section in a parsed settings file, or None if it has none."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get(SECTION), dict):
        section: dict[str, Any] = dict(data[SECTION])
    else:
        section = {}
    prefix = f"{SECTION}."
    for key, value in data.items():
        if isinstance(key, str) and key.startswith(prefix):
            # VS Code writes "phasewise.phases": {...}; a deeper dotted key nests further.
            node = section
            parts = key[len(prefix):].split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
    if section:
        return section
    if bare_allowed and data and set(data) <= _fields():
        return data
    return {} if bare_allowed and not data else None


def read_settings_file(path: Path, *, bare_allowed: bool = True) -> Any | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsFileError(f"cannot read settings file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(strip_jsonc(text)) if text.strip() else {}
    except ValueError as exc:
        raise SettingsFileError(f"settings file {path} is not valid JSON: {exc}") from None
    return section_of(data, bare_allowed=bare_allowed)


@dataclass(frozen=True, slots=True)
class FoundSettings:
    """Loaded settings and the file they came from (None: the defaults)."""

    loaded: LoadedSettings
    path: Path | None

    @property
    def origin(self) -> str:
        return str(self.path) if self.path else "defaults (no settings file found)"


def find_settings_file(start: Path) -> tuple[Path, Any] | None:
    """The nearest file holding a ``phasewise`` section, walking up from ``start``."""
    folder = start if start.is_dir() else start.parent
    for directory in (folder, *folder.parents):
        for name in CANDIDATES:
            candidate = directory / name
            if not candidate.is_file():
                continue
            section = read_settings_file(candidate, bare_allowed=name == "phasewise.json")
            if section is not None:
                return candidate, section
    return None


def load_cli_settings(settings_file: str | Path | None, near: Path | None = None) -> FoundSettings:
    """Settings for a command-line run (see the module docstring for the order)."""
    if settings_file:
        path = Path(settings_file).expanduser()
        section = read_settings_file(path)
        if section is None:
            raise SettingsFileError(
                f"settings file {path} has no `phasewise` section (expected {{\"phasewise\": {{...}}}} "
                f"or the section itself: phases, providers, ...)"
            )
        return FoundSettings(load_settings(section), path)
    found = find_settings_file((near or Path.cwd()).resolve())
    if found is None:
        return FoundSettings(load_settings(None), None)
    return FoundSettings(load_settings(found[1]), found[0])
