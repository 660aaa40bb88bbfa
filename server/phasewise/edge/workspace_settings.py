"""The workspace's ``phasewise`` settings as the server sees them: pulled, cached, warned about.

Settings are pulled with ``workspace/configuration`` (scoped to the document's URI, so a
multi-root workspace can route differently per folder) when the client can answer pulls, else
taken from what it pushed (``workspace/didChangeConfiguration``) or from ``initializationOptions``.
A change drops the cache. Issues not tied to one phase are shown once, as a message.

**User-level commands.** ``commands`` run unasked only when they are the user's own: those in the user
settings file (which the server reads itself: ``$PHASEWISE_USER_SETTINGS``, else
``$XDG_CONFIG_HOME/phasewise/settings.json``) and those a client declares as the user's in
``initializationOptions.userSettings.commands`` (a plugin, from its user-scope settings: what a
workspace cannot write). Commands in the settings a client pulls or pushes are not marked: they are a
workspace's as far as the server can tell, and run only once the user allowed them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer
    from phasewise.settings import LoadedSettings

log = logging.getLogger("phasewise")
_CACHE_LIMIT = 512


class WorkspaceSettings:
    def __init__(self, ls: PhasewiseServer) -> None:
        self.ls = ls
        self._cache: dict[str, LoadedSettings] = {}
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

        key = uri or ""
        if (found := self._cache.get(key)) is not None:
            return found
        raw: Any = None
        if self.ls.supports_config_pull():
            try:
                # shielded: a phase cancelled meanwhile must not fail pygls on the late answer
                # (https://github.com/openlawlibrary/pygls/issues/621, fixed after 2.1.1)
                result = await asyncio.shield(self.ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(scope_uri=uri, section=SECTION)])
                ))
                raw = result[0] if result else None
            except Exception as exc:  # a client that fails the pull: fall back to what we have
                log.warning("workspace/configuration failed: %s", type(exc).__name__)
        if raw is None:
            raw = self._pushed if self._pushed is not None else self._initial
        loaded = load_settings(raw, user_commands=self.user_commands())
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = loaded
        self._warn(loaded)
        return loaded

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
