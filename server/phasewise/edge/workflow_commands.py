"""Workflow commands (run, verify, compare, models): registered on the server beside the phases."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer


def register(ls: PhasewiseServer) -> None:
    """Nothing yet: the workflows add their commands here."""
