"""What an edge feature is: a class with its own state, registered with the server in one place.

A feature (esbonio's ``LanguageFeature`` pattern) gets the server when it is made and hooks its
handlers up in ``register``; the handlers are thin: they turn LSP values into plain ones, call
the core, and turn the answer back into LSP. Features find each other through
``PhasewiseServer.get_feature``; none reads another's private state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer


class Feature:
    def __init__(self, ls: PhasewiseServer) -> None:
        self.ls = ls

    def register(self) -> None:
        """Hook this feature's handlers up with the server (called once, by ``edge.setup``)."""
        raise NotImplementedError
