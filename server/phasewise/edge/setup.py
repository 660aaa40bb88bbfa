"""Where the server is put together: every feature, registered by one function.

``create_server`` makes the server and its features; ``serve_stdio`` is ``phasewise serve``.
"""

from __future__ import annotations

from phasewise.edge.feature import Feature
from phasewise.edge.features.code_actions import CodeActionsFeature
from phasewise.edge.features.keys import KeysFeature
from phasewise.edge.features.phases import PhasesFeature
from phasewise.edge.features.session import SessionFeature
from phasewise.edge.features.status import StatusFeature
from phasewise.edge.features.workflows import WorkflowsFeature
from phasewise.edge.server import PhasewiseServer
from phasewise.edge.stdio import configure_logging, run_stdio

FEATURES: tuple[type[Feature], ...] = (
    SessionFeature, KeysFeature, PhasesFeature, WorkflowsFeature, CodeActionsFeature, StatusFeature,
)


def register_features(ls: PhasewiseServer) -> None:
    """Make every feature and hook its handlers up with ``ls``."""
    features = [cls(ls) for cls in FEATURES]
    for feature in features:
        ls.add_feature(feature)
    for feature in features:
        feature.register()


def create_server() -> PhasewiseServer:
    ls = PhasewiseServer()
    register_features(ls)
    return ls


def serve_stdio() -> int:
    from phasewise.problems import register_environment_secrets

    register_environment_secrets()
    configure_logging()
    run_stdio(create_server())
    return 0


__all__ = ["FEATURES", "create_server", "register_features", "serve_stdio"]
