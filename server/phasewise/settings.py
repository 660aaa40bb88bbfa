"""The ``phasewise`` settings section: one typed model, documented per field, loud when wrong.

``load_settings`` never raises: it validates piece by piece (each phase, each provider, each
group) so one wrong entry yields a ``config`` issue naming its exact key path while the rest
keeps working. The same model generates the JSON schema editors show (``json_schema``).
May not import: edge, phases, router, providers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

SECTION = "phasewise"
BUILTIN_PHASES = ("plan", "code", "review")
Protocol = Literal["openai", "anthropic"]
EditFormat = Literal["tool", "text"]
FallbackKind = Literal[
    "missing-credentials",
    "rate-limit",
    "overloaded",
    "server-error",
    "network",
    "timeout",
    "auth",
    "permission",
    "billing",
    "model-not-found",
    "context-length",
    "capability",
    "content-filter",
    "bad-request",
]
DEFAULT_FALLBACK_ON: tuple[FallbackKind, ...] = (
    "rate-limit",
    "overloaded",
    "server-error",
    "network",
    "timeout",
)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


def _split_ref(value: Any) -> Any:
    if isinstance(value, str):
        provider, slash, model = value.partition("/")
        if not slash or not provider or not model:
            raise ValueError(
                f"expected a model reference '<provider>/<model-id>' (e.g. 'anthropic/"
                f"claude-sonnet-4-5') or {{provider, model}}, got {value!r}"
            )
        return {"provider": provider, "model": model}
    return value


class ModelRef(_Model):
    """A model at a provider: ``"provider/model"`` (split at the first slash) or an object."""

    provider: str = Field(min_length=1, description="Provider id, from the catalogue or `providers`.")
    model: str = Field(min_length=1, description="The provider's model id.")

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


ModelRefIn = Annotated[ModelRef, BeforeValidator(_split_ref, json_schema_input_type=str | ModelRef)]


class ModelSettings(_Model):
    """What is known of one model; any field left out is taken from the catalogue."""

    tool_calling: bool | None = Field(
        None, description="Whether the model can call tools (needed by `code` and `review` in tool edit format)."
    )
    context_window: int | None = Field(None, gt=0, description="Context window in tokens.")
    max_output_tokens: int | None = Field(None, gt=0, description="Largest answer the model gives, in tokens.")
    vision: bool | None = Field(None, description="Whether the model reads images.")
    input_price_per_mtok: float | None = Field(
        None, ge=0, description="Price in USD per million input tokens, for cost estimates."
    )
    output_price_per_mtok: float | None = Field(
        None, ge=0, description="Price in USD per million output tokens, for cost estimates."
    )


class ProviderSettings(_Model):
    """A provider: overrides of a catalogue entry, or a new provider declared in full."""

    protocol: Protocol | None = Field(
        None, description="Wire protocol: `openai` (chat completions) or `anthropic` (messages)."
    )
    base_url: str | None = Field(None, description="Base URL the SDK is pointed at (http or https).")
    api_key_env: str | list[str] | None = Field(
        None,
        description="Environment variable holding the key; a list to rotate several keys (e.g. two "
        "accounts) on rate-limit or billing errors. Keys never live in settings.",
    )
    auth_token_env: str | None = Field(
        None, description="Environment variable holding a bearer token sent instead of an API key."
    )
    requires_key: bool | None = Field(
        None, description="Whether a key is needed at all (local servers such as Ollama need none)."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent with every request (no secrets)."
    )
    models: dict[str, ModelSettings] = Field(
        default_factory=dict, description="Per-model capabilities and prices, by model id."
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _no_secret_headers(self) -> ProviderSettings:
        for name in self.headers:
            if name.lower() in {"authorization", "x-api-key", "api-key"}:
                raise ValueError(
                    f"header {name!r} would put a key in settings; name the env var in apiKeyEnv"
                )
        return self


class PhaseSettings(_Model):
    """How one phase is served."""

    model: ModelRefIn | None = Field(
        None, description="The model for this phase, `provider/model`. Unset: Anthropic's Claude."
    )
    fallbacks: list[ModelRefIn] = Field(
        default_factory=list,
        max_length=5,
        description="Models tried in order when the main one fails with a kind in `fallbackOn`.",
    )
    fallback_on: list[FallbackKind] = Field(
        default_factory=lambda: list(DEFAULT_FALLBACK_ON),
        description="Problem kinds that send the phase to its fallbacks. `auth`, `permission` and "
        "`billing` only when listed here.",
    )
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature.")
    max_output_tokens: int | None = Field(None, gt=0, description="Cap on the answer's length, in tokens.")
    edit_format: EditFormat = Field(
        "tool",
        description="How `code`/`review` answers are structured: `tool` (tool calling) or `text` (a "
        "JSON block in the answer, for models without tool calling).",
    )


class RetrySettings(_Model):
    """The one retry layer (the SDKs' own retries are always off)."""

    max_attempts: int = Field(3, ge=1, le=10, description="Attempts per model and key, first one included.")
    max_wait_seconds: float = Field(
        60, ge=0, le=3600, description="Longest wait honoured; a provider asking for more fails at once."
    )
    backoff_base_seconds: float = Field(
        0.5, ge=0, le=60, description="First wait of the exponential backoff (doubling, with jitter) "
        "used when the provider does not say how long to wait."
    )
    backoff_max_seconds: float = Field(8, ge=0, le=600, description="Longest backoff wait.")


class TimeoutSettings(_Model):
    """Time allowed for each stage of a request, in seconds."""

    connect_seconds: float = Field(10, gt=0, description="Opening the connection.")
    first_token_seconds: float = Field(
        120, gt=0, description="From sending the request to the first streamed token."
    )
    idle_seconds: float = Field(60, gt=0, description="Longest silence between two streamed chunks.")


class Settings(_Model):
    """The `phasewise` settings section."""

    phases: dict[str, PhaseSettings] = Field(
        default_factory=dict,
        description="Per-phase routing: `plan`, `code`, `review`, and any phase of your own.",
    )
    providers: dict[str, ProviderSettings] = Field(
        default_factory=dict, description="Overrides of catalogue providers and new providers, by id."
    )
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retry policy.")
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings, description="Timeouts.")
    default_model: ModelRefIn | None = Field(
        None, description="Model for every phase without one. Unset: Anthropic's Claude."
    )
    ledger_path: str | None = Field(
        None, description="File the run record is appended to. Unset: the user's state directory."
    )
    record_content: bool = Field(
        False, description="Whether the run record keeps prompts and answers (off: metadata only)."
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

    def phase_issues(self, phase: str) -> tuple[ConfigIssue, ...]:
        return dict(self.broken_phases).get(phase, ())

    def provider_issues(self, provider: str) -> tuple[ConfigIssue, ...]:
        return dict(self.broken_providers).get(provider, ())


def load_settings(raw: Any) -> LoadedSettings:
    """Validate a raw ``phasewise`` section. Never raises; wrong entries become issues."""
    root = SECTION
    if raw is None:
        return LoadedSettings(Settings())
    if not isinstance(raw, dict):
        issue = ConfigIssue(root, f"expected an object, got {type(raw).__name__}")
        return LoadedSettings(Settings(), (issue,))
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
        provider = _validate(ProviderSettings, f"{root}.providers.{name}", value, issues)
        if provider is None:
            broken_providers[name] = tuple(issues[before:])
        else:
            providers[name] = provider
    rest: dict[str, Any] = {}
    for name, value in raw.items():
        if name in {"phases", "providers"}:
            continue
        if name not in Settings.model_fields and to_snake(name) not in Settings.model_fields:
            issues.append(ConfigIssue(f"{root}.{name}", "unknown setting (check the spelling)"))
            continue
        probe = _validate(Settings, root, {name: value}, issues)
        if probe is not None:
            rest[name] = value
    base = Settings.model_validate(rest)
    settings = base.model_copy(update={"phases": phases, "providers": providers})
    return LoadedSettings(
        settings,
        tuple(issues),
        tuple(broken_phases.items()),
        tuple(broken_providers.items()),
    )


def to_snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def json_schema() -> dict[str, Any]:
    """JSON schema of the section, by alias (camelCase), as editors show it."""
    return Settings.model_json_schema(by_alias=True)
