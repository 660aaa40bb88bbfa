"""Keys an editor hands over in memory: ``phasewise/setKeys`` and ``initializationOptions.keys``.

The editor's secret store (VS Code's SecretStorage, Neovim's typed-in keys) sends them by env var
name; they are kept in memory only, masked everywhere from the moment they arrive, and come after
the environment and the OS keyring (``router.routes.Keyring``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from phasewise.edge.commands import SetKeysNotification, SetKeysParams
from phasewise.edge.feature import Feature

log = logging.getLogger("phasewise")


class KeysFeature(Feature):
    def register(self) -> None:
        @self.ls.feature(SetKeysNotification.METHOD)
        def on_set_keys(params: SetKeysParams) -> None:
            if not isinstance(params, SetKeysParams):  # pygls could not type them (wrong shape)
                log.warning("%s", SetKeysNotification.INVALID)
                return
            self.take(params.keys)
            self.ls.log_line(f"keys received in memory for: {', '.join(sorted(params.keys)) or 'none'}")
            self.ls.diagnostics.recheck_soon()  # a "no key" problem the key fixed goes (offline)

    def take(self, keys: Mapping[str, str | None]) -> None:
        """Keep ``keys`` (env var name → value; an empty value forgets that key) in memory."""
        self.ls.engine.keyring.set_memory({str(k): str(v or "") for k, v in keys.items()})
