"""Loading the ``phasewise`` section: validated piece by piece, never raising.

``load_settings`` validates each phase, each provider and each group on its own, so one wrong entry
yields a ``config`` issue naming its exact key path while the rest keeps working. Keys never live in
settings: a key-shaped value, or a field meant to hold one (``apiKey``, a secret header, credentials
in a URL), is refused with a ``config`` issue naming its path and where the key belongs instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from phasewise.serial import snake
from phasewise.settings.model import (
    BUILTIN_PHASES,
    COMMAND_NAME,
    SECTION,
    CommandIn,
    CommandSettings,
    PhaseSettings,
    ProviderSettings,
    Settings,
)
from phasewise.settings.secrets import (
    SECRET_FIELDS,
    SECRET_HEADERS,
    URL_SECRET,
    Surface,
    key_env_hint,
    looks_like_key,
    normalised,
    secret_help,
)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One wrong setting: its full key path and what was expected."""

    path: str
    message: str

    def describe(self) -> str:
        return f"`{self.path}`: {self.message}"


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in {"function-before[_split_ref(), ModelRef]"}:
            out += f".{part}"
    return out


def _issues(prefix: str, err: ValidationError) -> list[ConfigIssue]:
    found = []
    for e in err.errors(include_url=False):
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling)"
        elif e["type"] in {"missing"}:
            message = "required"
        found.append(ConfigIssue(_path(prefix, e["loc"]), message))
    return found


def _provider_secret_issues(provider_id: str, prefix: str, raw: Any, surface: Surface = "editor",
                            ) -> list[ConfigIssue]:
    """Keys written into a provider's entry: secret fields, key-shaped variable names, secret
    headers, credentials in the base URL. The messages never repeat the value."""
    if not isinstance(raw, dict):
        return []
    env = key_env_hint(provider_id, raw)
    help_text = secret_help(provider_id, env, surface)
    found: list[ConfigIssue] = []
    for name in raw:
        if isinstance(name, str) and normalised(name) in SECRET_FIELDS:
            found.append(ConfigIssue(f"{prefix}.{name}", f"a key written into settings is refused; {help_text}"))
    for field in ("apiKeyEnv", "api_key_env", "authTokenEnv", "auth_token_env"):
        value = raw.get(field)
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            if isinstance(v, str) and looks_like_key(v):
                path = f"{prefix}.{field}" + (f"[{i}]" if isinstance(value, list) else "")
                found.append(ConfigIssue(path, f"this is a key, not the name of an environment variable; "
                                               f"{help_text}"))
    headers = raw.get("headers")
    if isinstance(headers, dict):
        for name, value in headers.items():
            if str(name).lower() in SECRET_HEADERS or (isinstance(value, str) and looks_like_key(value, shape=False)):
                found.append(ConfigIssue(f"{prefix}.headers.{name}",
                                         f"header {name!r} would put a key in settings; {help_text}"))
    url = raw.get("baseUrl", raw.get("base_url"))
    if isinstance(url, str):
        netloc = url.partition("://")[2].split("/", 1)[0]
        if "@" in netloc or URL_SECRET.search(url):
            found.append(ConfigIssue(f"{prefix}.baseUrl", f"credentials in the URL would put a key in settings; "
                                                          f"{help_text}"))
    return found


def _validate(cls: type[BaseModel], prefix: str, raw: Any, issues: list[ConfigIssue]) -> Any:
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        issues.extend(_issues(prefix, err))
        return None


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    """Valid settings plus the issues found; ``broken_phases``/``broken_providers`` map an id to
    the issues that made its entry unusable."""

    settings: Settings
    issues: tuple[ConfigIssue, ...] = ()
    broken_phases: tuple[tuple[str, tuple[ConfigIssue, ...]], ...] = ()
    broken_providers: tuple[tuple[str, tuple[ConfigIssue, ...]], ...] = ()
    surface: Surface = "editor"  # where the phases run: the way out of a key problem depends on it
    # Commands whose entry is exactly the one in the user's own settings (they run unasked); every
    # other command came from a workspace or a client that did not say it was the user's.
    user_commands: frozenset[str] = frozenset()

    def command_origin(self, name: str) -> str:
        """``user`` (user-level settings) or ``workspace`` (anything else) for a command's entry."""
        return "user" if name in self.user_commands else "workspace"

    def phase_issues(self, phase: str) -> tuple[ConfigIssue, ...]:
        return dict(self.broken_phases).get(phase, ())

    def provider_issues(self, provider: str) -> tuple[ConfigIssue, ...]:
        return dict(self.broken_providers).get(provider, ())


_COMMAND = TypeAdapter(CommandIn)


def _commands(raw: Any, user: Any, issues: list[ConfigIssue]) -> tuple[dict[str, CommandSettings], frozenset[str]]:
    """``commands``, each entry validated on its own: the user's (``user``) under the section's by
    name, and the names whose entry is exactly the user's own."""
    prefix = f"{SECTION}.commands"
    valid: dict[str, CommandSettings] = {}
    mine: dict[str, CommandSettings] = {}
    for source, into in ((user, mine), (raw, valid)):
        if source is None:
            continue
        if not isinstance(source, dict):
            issues.append(ConfigIssue(prefix, f"expected an object of named commands, got {type(source).__name__}"))
            continue
        for name, value in source.items():
            if not isinstance(name, str) or not COMMAND_NAME.match(name):
                issues.append(ConfigIssue(f"{prefix}.{name}", "expected a command name such as `test` (letters, "
                                                              "digits, `_.:-`, at most 64)"))
                continue
            try:
                into[name] = _COMMAND.validate_python(value)
            except ValidationError as err:
                issues.extend(_issues(f"{prefix}.{name}", err))
    merged = {**mine, **valid}
    return merged, frozenset(n for n, c in mine.items() if merged.get(n) == c)


def load_settings(raw: Any, *, surface: Surface = "editor", user_commands: Any = None) -> LoadedSettings:
    """Validate a raw ``phasewise`` section. Never raises; wrong entries become issues.
    ``surface`` says where the phases run (the language server, or the command line);
    ``user_commands`` are the ``commands`` of the user's own settings (under the section's, by
    name): those whose entry stays exactly the user's run unasked (``LoadedSettings.user_commands``)."""
    root = SECTION
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        issue = ConfigIssue(root, f"expected an object, got {type(raw).__name__}")
        issues0: list[ConfigIssue] = [issue]
        commands, mine = _commands(None, user_commands, issues0)
        return LoadedSettings(Settings().model_copy(update={"commands": commands}), tuple(issues0), surface=surface,
                              user_commands=mine)
    issues: list[ConfigIssue] = []
    broken_phases: dict[str, tuple[ConfigIssue, ...]] = {}
    broken_providers: dict[str, tuple[ConfigIssue, ...]] = {}

    def section(name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            issues.append(ConfigIssue(f"{root}.{name}", f"expected an object, got {type(value).__name__}"))
            return {}
        return value

    phases: dict[str, PhaseSettings] = {}
    for name, value in section("phases").items():
        before = len(issues)
        phase = _validate(PhaseSettings, f"{root}.phases.{name}", value, issues)
        if phase is None:
            broken_phases[name] = tuple(issues[before:])
        else:
            phases[name] = phase
    providers: dict[str, ProviderSettings] = {}
    for name, value in section("providers").items():
        before = len(issues)
        if secret := _provider_secret_issues(name, f"{root}.providers.{name}", value, surface):
            issues.extend(secret)
            broken_providers[name] = tuple(secret)
            continue
        provider = _validate(ProviderSettings, f"{root}.providers.{name}", value, issues)
        if provider is None:
            broken_providers[name] = tuple(issues[before:])
        else:
            providers[name] = provider
    commands, mine = _commands(raw.get("commands"), user_commands, issues)
    rest: dict[str, Any] = {}
    for name, value in raw.items():
        if name in {"phases", "providers", "commands"}:
            continue
        if isinstance(name, str) and normalised(name) in SECRET_FIELDS:
            issues.append(ConfigIssue(f"{root}.{name}", f"a key written into settings is refused; "
                                                        f"{secret_help(None, None, surface)}"))
            continue
        if name not in Settings.model_fields and snake(name) not in Settings.model_fields:
            issues.append(ConfigIssue(f"{root}.{name}", "unknown setting (check the spelling)"))
            continue
        probe = _validate(Settings, root, {name: value}, issues)
        if probe is not None:
            rest[name] = value
    base = Settings.model_validate(rest)
    settings = base.model_copy(update={"phases": phases, "providers": providers, "commands": commands})
    for name, phase in phases.items():
        for i, command in enumerate(phase.agent.commands if phase.agent is not None else ()):
            if command not in commands:
                issues.append(ConfigIssue(f"{root}.phases.{name}.agent.commands[{i}]",
                                          f"unknown command {command!r}: declare it under `{root}.commands.{command}`"))
    known = {*BUILTIN_PHASES, *phases, *broken_phases}
    for i, name in enumerate(settings.pipeline):
        if name not in known:
            issues.append(ConfigIssue(f"{root}.pipeline[{i}]", f"unknown phase {name!r}: declare it under "
                                                               f"`phasewise.phases.{name}` or use plan, code, review"))
    return LoadedSettings(
        settings,
        tuple(issues),
        tuple(broken_phases.items()),
        tuple(broken_providers.items()),
        surface,
        mine,
    )


def phase_kind(settings: Settings, phase: str) -> str:
    """What ``phase`` is: a built-in phase is its own kind, and so is one named ``qa``; one of the
    user's says, else ``plan``."""
    own = settings.phases.get(phase)
    if own is not None and own.kind is not None:
        return own.kind
    return phase if phase in (*BUILTIN_PHASES, "qa") else "plan"


def with_phase_model(loaded: LoadedSettings, phase: str, model: str) -> LoadedSettings:
    """``loaded`` where ``phase`` runs on ``model`` alone (its other options kept, no fallbacks):
    a retry on a chosen fallback, one row of a comparison."""
    raw = loaded.settings.model_dump(by_alias=True, exclude_none=True, mode="json")
    current = loaded.settings.phases.get(phase) or PhaseSettings()
    entry = current.model_dump(by_alias=True, exclude_none=True, mode="json")
    entry["model"] = model
    entry["fallbacks"] = []
    raw.setdefault("phases", {})[phase] = entry
    return replace(load_settings(raw, surface=loaded.surface), user_commands=loaded.user_commands)


def json_schema() -> dict[str, Any]:
    """JSON schema of the section, by alias (camelCase), as editors show it."""
    return Settings.model_json_schema(by_alias=True)
