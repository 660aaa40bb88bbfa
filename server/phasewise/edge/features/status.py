"""``phasewise.status``: the resolved route of every phase and the problems found offline."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

from phasewise.edge.commands import CommandError, StatusArgs, register_command
from phasewise.edge.feature import Feature

if TYPE_CHECKING:
    from phasewise.keystore import KeyStoreInfo


class StatusFeature(Feature):
    def register(self) -> None:
        register_command(self.ls, "phasewise.status", StatusArgs, self.status)

    async def _keyring_info(self) -> KeyStoreInfo:
        """Asked once off the loop (a keyring may be slow to answer), then known: no thread hop."""
        keyring = self.ls.engine.keyring
        known = keyring.store_info_known()
        if known is not None:
            return known
        return await asyncio.to_thread(keyring.store_info)

    async def status(self, args: StatusArgs) -> dict[str, Any]:
        """The resolved route of every phase and the problems found offline (no network)."""
        from phasewise import __version__
        from phasewise.phases.commands import commands_status
        from phasewise.phases.documents import Document
        from phasewise.phases.service import PhaseInput

        ls = self.ls
        uri = args.uri
        loaded = await ls.settings_for(uri)
        resolver = ls.engine.resolver(loaded)
        try:
            doc = ls.document(uri) if uri else Document("untitled:status", "")
        except CommandError:
            doc = Document(uri or "untitled:status", "")
        phases = []
        for phase in resolver.phase_names():
            view = resolver.describe(resolver.phase(phase))
            problem = ls.service.preflight(loaded, phase, PhaseInput(doc, "status"))
            view["problem"] = problem.to_json() if problem else None
            phases.append(view)
        from phasewise.workflows.health import health_status
        from phasewise.workflows.ledger import ledger_path

        health = await health_status(ledger_path(loaded.settings.ledger_path), resolver)
        return {
            "version": __version__,
            "phases": phases,
            "health": health,
            "commands": commands_status(loaded),
            "settingsIssues": [{"path": i.path, "message": i.message} for i in loaded.issues],
            "keysInMemory": sorted(ls.engine.keyring.memory_envs()),
            "keyring": (await self._keyring_info()).to_json(),
            "sdksImported": sorted(m for m in ("openai", "anthropic") if m in sys.modules),
        }
