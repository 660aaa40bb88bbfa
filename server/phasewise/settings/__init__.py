"""The ``phasewise`` settings section: one typed model, documented per field, loud when wrong.

``model`` holds the typed model (each field described, defaulted; the same model generates the JSON
schema editors show: ``json_schema``); ``loading`` validates a raw section piece by piece and never
raises: one wrong entry yields a ``config`` issue naming its exact key path while the rest keeps
working; ``secrets`` recognises keys written where they do not belong. Keys never live in settings:
a key-shaped value, or a field meant to hold one (``apiKey``, a secret header, credentials in a
URL), is refused with a ``config`` issue naming its path and where the key belongs instead.
``commands`` carry their origin: those from the user's own settings run unasked
(``LoadedSettings.user_commands``), any other only after the user allowed that command line.
``security``, ``network`` and ``ledgerPath`` are *user-level* settings (``USER_LEVEL_FIELDS``): they
decide where keys may go, how connections are checked and where Phasewise writes outside the
workspace, so a workspace may not set them (VS Code declares them application-scoped; the command
line reads them only from the user's settings file; the Emacs recipe takes them from the user's own
variable). A path setting that cannot be expanded (``~nosuchuser/x``) is a ``config`` issue, never
an error later. ``schema`` generates VS Code's ``contributes.configuration`` from the model
(``python -m phasewise.settings.schema --vscode``).

May import ``providers`` (the catalogue's data), ``gate``, ``problems`` and ``serial``.
"""

from __future__ import annotations

from phasewise.settings.loading import (
    ConfigIssue,
    LoadedSettings,
    json_schema,
    load_settings,
    phase_kind,
    with_phase_model,
)
from phasewise.settings.model import (
    BUILTIN_PHASES,
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONTEXT_TOKENS,
    DEFAULT_EDIT_FORMAT,
    DEFAULT_FALLBACK_ON,
    DEFAULT_MAX_STEPS,
    EDIT_FORMATS,
    SECTION,
    USER_LEVEL_FIELDS,
    AgentSettings,
    AgentToolName,
    CacheSettings,
    CommandSettings,
    EditFormatName,
    FallbackKind,
    ModelRef,
    ModelSettings,
    NetworkSettings,
    PhaseKind,
    PhaseSettings,
    Protocol,
    ProviderSettings,
    RetrySettings,
    SecuritySettings,
    Settings,
    TimeoutSettings,
)
from phasewise.settings.secrets import SET_API_KEY_ACTION, Surface, key_way_out

__all__ = [
    "BUILTIN_PHASES",
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_CONTEXT_TOKENS",
    "DEFAULT_EDIT_FORMAT",
    "DEFAULT_FALLBACK_ON",
    "DEFAULT_MAX_STEPS",
    "EDIT_FORMATS",
    "SECTION",
    "SET_API_KEY_ACTION",
    "USER_LEVEL_FIELDS",
    "AgentSettings",
    "AgentToolName",
    "CacheSettings",
    "CommandSettings",
    "ConfigIssue",
    "EditFormatName",
    "FallbackKind",
    "LoadedSettings",
    "ModelRef",
    "ModelSettings",
    "NetworkSettings",
    "PhaseKind",
    "PhaseSettings",
    "Protocol",
    "ProviderSettings",
    "RetrySettings",
    "SecuritySettings",
    "Settings",
    "Surface",
    "TimeoutSettings",
    "json_schema",
    "key_way_out",
    "load_settings",
    "phase_kind",
    "with_phase_model",
]
