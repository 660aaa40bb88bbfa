"""Settings for the command line: the same ``phasewise`` section the editor uses, from a file.

Where ``phasewise run FILE`` (and every other command) finds its settings, first found wins:

1. ``--settings PATH``: a JSON (or JSONC) file holding the ``phasewise`` section, or a
   ``{"phasewise": {...}}`` object, or VS Code's dotted keys (``"phasewise.phases": {...}``).
2. Walking up from FILE's folder (or the current folder) to the root, in each folder:
   ``phasewise.json``, then ``.vscode/settings.json``. A file without a ``phasewise`` section
   is passed over, so a workspace's unrelated VS Code settings do not hide a parent's.
3. Nothing: the defaults (every phase on Anthropic's Claude).

Beneath whichever of these is found lies the **user settings file**
(``$PHASEWISE_USER_SETTINGS``, else ``$XDG_CONFIG_HOME/phasewise/settings.json``, else
``~/.config/phasewise/settings.json``): the same section, merged key by key under the project's
(as VS Code merges user and workspace settings). The user-level fields (``security``,
``network``, ``ledgerPath``: where keys may go, CA bundle, proxy, where the run record is written)
are read from the user settings file only; in a project file (or ``--settings``) they are ignored
with a ``config`` issue, so a repository cannot allow its own origin for your keys nor have
Phasewise write outside it. ``commands`` from the user settings file are the user's own (they run
unasked); a project file's, or a user command the project changed, run only once allowed.

VS Code's settings files are JSONC: comments and trailing commas are accepted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from phasewise.problems import InputError
from phasewise.serial import snake
from phasewise.settings import (
    SECTION,
    USER_LEVEL_FIELDS,
    ConfigIssue,
    LoadedSettings,
    Settings,
    load_settings,
)

USER_SETTINGS_ENV = "PHASEWISE_USER_SETTINGS"

CANDIDATES = ("phasewise.json", ".vscode/settings.json")


class SettingsFileError(InputError):
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
    """Loaded settings, the project file they came from (None: none found) and the user settings
    file, when there is one."""

    loaded: LoadedSettings
    path: Path | None
    user_path: Path | None = None

    @property
    def origin(self) -> str:
        where = str(self.path) if self.path else "defaults (no settings file found)"
        return f"{where} + user settings {self.user_path}" if self.user_path else where


def user_settings_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the user settings file is (whether or not it exists)."""
    env = os.environ if environ is None else environ
    if explicit := env.get(USER_SETTINGS_ENV):
        return Path(explicit).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base).expanduser() / "phasewise" / "settings.json"


def _merge(under: Any, over: Any) -> Any:
    """``over`` on top of ``under``, objects merged key by key (as VS Code merges settings)."""
    if isinstance(under, dict) and isinstance(over, dict):
        out = dict(under)
        for key, value in over.items():
            out[key] = _merge(under.get(key), value)
        return out
    return over


def _user_section() -> tuple[Path | None, dict[str, Any]]:
    path = user_settings_path()
    if not path.is_file():
        return None, {}
    section = read_settings_file(path)
    if section is not None and not isinstance(section, dict):
        raise SettingsFileError(f"user settings file {path}: expected an object")
    return path, dict(section or {})


def without_user_level(project: Any, project_path: Path | None) -> tuple[Any, list[ConfigIssue]]:
    """A project file's section without the user-level fields (``security``, ``network``,
    ``ledgerPath``), and a ``config`` issue for each one it tried to set: a repository may not
    allow its own origin for your keys nor have Phasewise write outside it."""
    ignored: list[ConfigIssue] = []
    if isinstance(project, dict):
        project = dict(project)
        for name, why in USER_LEVEL_FIELDS.items():
            for key in {name, snake(name)}:
                if key in project:
                    project.pop(key)
                    ignored.append(ConfigIssue(
                        f"{SECTION}.{name}",
                        f"ignored in {project_path or 'this settings file'}: `{SECTION}.{name}` {why}, so it is "
                        f"read only from your user settings file ({user_settings_path()}); the default is used",
                    ))
    return project, ignored


def merge_sections(under: Any, over: Any) -> Any:
    """``over`` on top of ``under``, objects merged key by key (as VS Code merges user and
    workspace settings); either may be None (absent)."""
    return over if under is None else under if over is None else _merge(under, over)


def _combine(project: Any, project_path: Path | None) -> FoundSettings:
    """The project's section over the user's; user-level fields from the user file only."""
    user_path, user = _user_section()
    project, ignored = without_user_level(project, project_path)
    raw = project if not user else user if project is None else _merge(user, project)
    # the user file's commands are the user's own: they run unasked, unless the project changed them
    loaded = load_settings(raw, surface="cli", user_commands=user.get("commands"))
    if ignored:
        loaded = replace(loaded, issues=(*ignored, *loaded.issues))
    return FoundSettings(loaded, project_path, user_path)


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
        return _combine(section, path)
    found = find_settings_file((near or Path.cwd()).resolve())
    if found is None:
        return _combine(None, None)
    return _combine(found[1], found[0])
