"""The workspace's ``phasewise`` settings as the server sees them: pulled, cached, warned about.

Settings are pulled with ``workspace/configuration`` (scoped to the document's URI, so a
multi-root workspace can route differently per folder) when the client can answer pulls, else
taken from what it pushed (``workspace/didChangeConfiguration``) or from ``initializationOptions``.
An answer that says nothing (``null``, ``{}``: lsp-mode answers ``[{}]`` for a section nobody
registered) is no answer, and a pull gets ``PULL_SECONDS`` before what was pushed is used.
A change drops the cache. Issues not tied to one phase are shown once, as a message.

**The repository's ``phasewise.json``.** The nearest ``phasewise.json`` at or above the document,
inside its workspace folder (never above it), lies beneath the editor's settings, merged key by
key: a team's routes live in one file that VS Code, Neovim, Helix and the command line all read.
It is the repository's, so it is trusted as the workspace's settings are: its ``commands`` run only
once allowed, and the user-level fields (``security``, ``network``, ``ledgerPath``) are ignored
with an issue. A change to the file is read at once (its modification stamp is part of the cache).

**User-level commands.** ``commands`` run unasked only when they are the user's own: those in the user
settings file (which the server reads itself: ``$PHASEWISE_USER_SETTINGS``, else
``$XDG_CONFIG_HOME/phasewise/settings.json``) and those a client declares as the user's in
``initializationOptions.userSettings.commands`` (a plugin, from its user-scope settings: what a
workspace cannot write). Commands in the settings a client pulls or pushes are not marked: they are a
workspace's as far as the server can tell, and run only once the user allowed them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import to_fs_path

from phasewise.edge.requests import ClientSilent, ask_client

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer
    from phasewise.settings import LoadedSettings

log = logging.getLogger("phasewise")
_CACHE_LIMIT = 512
PULL_SECONDS = 5.0  # how long a settings pull may take before what was pushed or given at start is used
PROJECT_FILE = "phasewise.json"


def _answered(raw: Any) -> bool:
    """Whether a settings answer says anything: ``None`` and ``{}`` do not (anything else does, even
    what is not settings at all: that is reported as a settings issue, not passed over)."""
    return raw is not None and raw != {}


class WorkspaceSettings:
    def __init__(self, ls: PhasewiseServer) -> None:
        self.ls = ls
        # per document: its settings and the stamp of the phasewise.json they were read with
        self._cache: dict[str, tuple[LoadedSettings, tuple[int, int] | None]] = {}
        self._initial: Any = None
        self._pushed: Any = None
        self._warned: set[str] = set()
        self._user_declared: Any = None  # initializationOptions.userSettings.commands

    def set_initialization_options(self, options: Any) -> None:
        """The ``phasewise`` section from ``initializationOptions`` (``{phasewise: …}``,
        ``{settings: …}`` or the section itself)."""
        if isinstance(options, dict):
            user = options.get("userSettings")
            if isinstance(user, dict):
                user = user.get("phasewise", user)
                self._user_declared = user.get("commands") if isinstance(user, dict) else None
            self._initial = options.get("phasewise", options.get("settings"))
            if self._initial is None and ("phases" in options or "providers" in options):
                self._initial = options

    def changed(self, pushed: Any) -> None:
        if isinstance(pushed, dict) and isinstance(pushed.get("phasewise"), dict):
            self._pushed = pushed["phasewise"]
        self._cache.clear()

    async def get(self, uri: str | None) -> LoadedSettings:
        from phasewise.settings import SECTION, load_settings
        from phasewise.workflows.config import merge_sections

        key = uri or ""
        project = self.project_file(uri)
        stamp = project[1] if project is not None else None
        if (found := self._cache.get(key)) is not None and found[1] == stamp:
            return found[0]
        raw: Any = None
        if self.ls.supports_config_pull():
            try:
                result = await ask_client(self.ls, "workspace/configuration", self.ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(scope_uri=uri, section=SECTION)])
                ), PULL_SECONDS)
                raw = result[0] if isinstance(result, Sequence) and not isinstance(result, str) and result else None
            except ClientSilent as silent:  # a client that fails the pull: fall back to what we have
                log.warning("%s", silent)
        if not _answered(raw):  # lsp-mode answers [{}] for a section nobody registered: no answer
            raw = self._pushed if _answered(self._pushed) else self._initial
        issues: list[Any] = []
        if project is not None:  # the repository's phasewise.json, beneath the editor's settings
            section, issues = self._project_section(project[0])
            raw = merge_sections(section, raw if _answered(raw) else None)
        loaded = load_settings(raw, surface=self.ls.set_key_command() or "editor", user_commands=self.user_commands())
        if issues:
            loaded = replace(loaded, issues=(*issues, *loaded.issues))
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = (loaded, stamp)
        self._warn(loaded)
        return loaded

    def project_file(self, uri: str | None) -> tuple[Path, tuple[int, int]] | None:
        """The ``phasewise.json`` nearest the document inside its workspace folder (walking up to the
        folder, never above it), with its modification stamp (a change to it is read at once)."""
        from phasewise.edge.shown import workspace_folder

        root = workspace_folder(self.ls, uri) if uri else None
        if root is None:
            base = self.ls.workspace.root_path if not uri else None
            if not base:
                return None
            root = Path(base).resolve()
            start = root
        else:
            path = to_fs_path(uri) if uri else None
            start = Path(path).resolve().parent if path else root
        for folder in (start, *start.parents):
            candidate = folder / PROJECT_FILE
            try:
                st = candidate.stat()
            except OSError:
                st = None
            if st is not None and candidate.is_file():
                return candidate, (st.st_mtime_ns, st.st_size)
            if folder == root or not folder.is_relative_to(root):
                return None
        return None

    def _project_section(self, path: Path) -> tuple[Any, list[Any]]:
        """The file's ``phasewise`` section (user-level fields taken out, each one an issue); a
        file that cannot be read is an issue too, never a crash."""
        from phasewise.settings import ConfigIssue
        from phasewise.workflows.config import SettingsFileError, read_settings_file, without_user_level

        try:
            section = read_settings_file(path)
        except SettingsFileError as err:
            return None, [ConfigIssue(PROJECT_FILE, f"{err}; it is left out")]
        if section is not None and not isinstance(section, dict):
            return None, [ConfigIssue(PROJECT_FILE, f"{path}: expected an object; it is left out")]
        return without_user_level(section, path)

    def user_commands(self) -> dict[str, Any] | None:
        """The user's own ``commands``: the user settings file's, then what the client declared as the
        user's (each by name over the file's)."""
        from phasewise.workflows.config import SettingsFileError, read_settings_file, user_settings_path

        found: dict[str, Any] = {}
        path = user_settings_path()
        if path.is_file():
            try:
                section = read_settings_file(path)
            except SettingsFileError as err:
                log.warning("%s", err)
                section = None
            commands = section.get("commands") if isinstance(section, dict) else None
            if isinstance(commands, dict):
                found.update(commands)
        if isinstance(self._user_declared, dict):
            found.update(self._user_declared)
        return found or None

    def _warn(self, loaded: LoadedSettings) -> None:
        """Settings issues not tied to one phase are shown once, as a message, not a crash."""
        for issue in loaded.issues:
            text = issue.describe()
            if text in self._warned:
                continue
            self._warned.add(text)
            self.ls.window_show_message(types.ShowMessageParams(
                # no Markdown backticks in a notification (it is plain text everywhere)
                type=types.MessageType.Warning, message=f"Phasewise settings: {text}".replace("`", "")
            ))
