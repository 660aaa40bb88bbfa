"""The ``phasewise`` settings model: one typed model, documented per field, with its defaults.

Every field has a description (the same model generates the JSON schema editors show: ``json_schema``
and ``phasewise.settings.schema``). Values a field refuses are refused here, by pydantic; which
entries are usable and what is wrong with the rest is ``phasewise.settings.loading``'s work.
``USER_LEVEL_FIELDS`` names the fields a workspace may not set, and why.
May import: providers (the catalogue's data, lazily), gate, problems, serial (its case converter).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from phasewise.serial import camel
from phasewise.settings.secrets import SECRET_HEADERS, env_names, looks_like_key

SECTION = "phasewise"
BUILTIN_PHASES = ("plan", "code", "review")
Protocol = Literal["openai", "anthropic"]
PhaseKind = Literal["plan", "code", "review", "qa"]
# The edit formats' names and the default, defined here only: the settings validate and document
# ``editFormat`` with them, and ``phases.formats`` holds one format object per name.
EditFormatName = Literal["search-replace", "whole", "tool", "text"]
EDIT_FORMATS: Final[tuple[EditFormatName, ...]] = get_args(EditFormatName)
DEFAULT_EDIT_FORMAT: Final[EditFormatName] = "search-replace"
DEFAULT_CONTEXT_TOKENS = 8000
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
        alias_generator=camel, populate_by_name=True, extra="forbid", frozen=True
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
    edit_format: EditFormatName | None = Field(
        None, description="The edit format the model does best, used where a phase sets none."
    )
    input_price_per_mtok: float | None = Field(
        None, ge=0, description="Price in USD per million input tokens, for cost estimates."
    )
    output_price_per_mtok: float | None = Field(
        None, ge=0, description="Price in USD per million output tokens, for cost estimates."
    )
    cache_read_price_per_mtok: float | None = Field(
        None, ge=0, description="Price in USD per million input tokens read from the provider's prompt cache. "
        "Unset: the catalogue's, else the input price."
    )
    cache_write_price_per_mtok: float | None = Field(
        None, ge=0, description="Price in USD per million input tokens written to the provider's prompt cache "
        "(Anthropic: 1.25x the input price). Unset: the catalogue's, else the input price."
    )
    cache_min_tokens: int | None = Field(
        None, gt=0, description="Shortest prompt prefix, in tokens, worth an Anthropic `cache_control` mark "
        "(below it nothing is cached). Unset: the catalogue's, else 1024."
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

    @field_validator("api_key_env")
    @classmethod
    def _key_env_names(cls, value: str | list[str] | None) -> str | list[str] | None:
        return env_names(value, "the one holding the key")

    @field_validator("auth_token_env")
    @classmethod
    def _token_env_name(cls, value: str | None) -> str | None:
        env_names(value, "the one holding the token")
        return value

    @model_validator(mode="after")
    def _no_secret_headers(self) -> ProviderSettings:
        # A backstop: ``load_settings`` reports these first, with the provider's own key variable.
        for name, value in self.headers.items():
            if name.lower() in SECRET_HEADERS or looks_like_key(value, shape=False):
                raise ValueError(
                    f"header {name!r} would put a key in settings; name the env var in apiKeyEnv"
                )
        return self


AgentToolName = Literal["read_file", "list_files", "search_files", "edit_file"]
DEFAULT_MAX_STEPS = 25
DEFAULT_COMMAND_TIMEOUT = 300.0
# A command's name as settings and the model use it: a word, no spaces ("test", "lint:py").
COMMAND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class CommandSettings(_Model):
    """A named command a phase that works in steps may run (``run_command {name}``): exactly this
    command line, no arguments from the model. One from a workspace runs only after the user allowed it."""

    run: str = Field(
        min_length=1, max_length=4000,
        description="The command line, run as it is: split like a shell's words and run without a shell, "
        "unless it needs one (pipes, `&&`, redirections, globs, `$VARS`: then `/bin/sh -c`). E.g. `pytest -q`.",
    )
    timeout_seconds: float = Field(
        DEFAULT_COMMAND_TIMEOUT, gt=0, le=86400,
        description="Longest the command may run, in seconds; then it and every process it started are killed.",
    )
    cwd: str | None = Field(
        None, description="Folder to run in, relative to the workspace folder and inside it. Unset: the "
        "workspace folder.",
    )

    @field_validator("run")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a command line, got an empty one")
        if set(value) & set("\n\r\0"):
            raise ValueError("expected one command line: no line breaks (join commands with `&&`)")
        return value.strip()

    @field_validator("cwd")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is None:
            return value
        text = value.strip()
        if not text or "\0" in text:
            raise ValueError("expected a folder relative to the workspace folder, e.g. `server`")
        if text.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:", text):
            raise ValueError(f"expected a folder relative to the workspace folder (inside it), got {value!r}")
        return text


def _command(value: Any) -> Any:
    """``"pytest -q"`` is ``{"run": "pytest -q"}``."""
    return {"run": value} if isinstance(value, str) else value


CommandIn = Annotated[CommandSettings, BeforeValidator(_command, json_schema_input_type=str | CommandSettings)]


class AgentSettings(_Model):
    """A phase that works in steps: the model reads, searches and (code kind) edits through tools,
    step by step, each step on the phase's route; bounded."""

    max_steps: int = Field(
        DEFAULT_MAX_STEPS, ge=1, le=200,
        description="Most model calls the phase makes; reached, the phase ends incomplete (a code phase "
        "applies nothing).",
    )
    max_cost_usd: float | None = Field(
        None, gt=0, description="Most the phase may cost, in USD at the catalogue's prices; reached, the phase "
        "ends incomplete. Unset: no cost bound.",
    )
    tools: list[AgentToolName] | None = Field(
        None, description="The tools the phase may call, from `read_file`, `list_files`, `search_files`, "
        "`edit_file`. Unset: all of them for a `code` phase; a `plan` or `review` phase never gets "
        "`edit_file`.",
    )
    commands: list[str] = Field(
        default_factory=list,
        description="Names of commands (from `phasewise.commands`) the phase may run with the tool "
        "`run_command {name}`, e.g. `[\"test\"]`. A command from workspace settings runs only after you allowed "
        "that command line for that workspace. Unset: no commands.",
    )

    @field_validator("commands")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not COMMAND_NAME.match(name):
                raise ValueError(f"expected command names such as `test` (letters, digits, `_.:-`), got {name!r}")
        return list(dict.fromkeys(value))


def _agent(value: Any) -> Any:
    """``agent: true`` is the default bounds and tools; ``false`` is off."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


class PhaseSettings(_Model):
    """How one phase is served."""

    kind: PhaseKind | None = Field(
        None,
        description="What the phase's answer is and what is done with it: `plan` (text, shown), `code` (a "
        "change, applied after you confirm it), `review` (findings, shown as problems) or `qa` (runs the "
        "commands in `agent.commands`, reports each failure as a finding and says whether they `passed`; it "
        "always works in steps). The built-in phases are their own kind, and so is a phase named `qa`; "
        "another phase of your own is a `plan` unless it says otherwise.",
    )
    instructions: str | None = Field(
        None,
        description="Text added to this phase's prompt (what to focus on, house rules), or `@path` to a file "
        "in the workspace, e.g. `@.phasewise/test.md`.",
    )
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
    edit_format: EditFormatName | None = Field(
        None,
        description="How answers are structured. `code`: `search-replace` (SEARCH/REPLACE blocks, each "
        "headed by its file's path), `whole` (whole files back, for small files and weak coders), `tool` "
        "(line edits in a tool call) or `text` (the same line edits as a JSON block). `review`: findings "
        "by tool call, or as a JSON block with `text`. Unset: the model's default from the catalogue, "
        "else `search-replace`.",
    )
    context_tokens: int = Field(
        DEFAULT_CONTEXT_TOKENS, ge=0, le=1_000_000,
        description="Tokens of related files (named, imported, callers, repository map) sent with the "
        "document; 0 sends the document only.",
    )
    confirm: bool = Field(
        True, description="`code`: show the change for confirmation before it lands, where the editor can.",
    )
    agent: Annotated[AgentSettings | None, BeforeValidator(_agent, json_schema_input_type=bool | AgentSettings)] = (
        Field(None, description="Work in steps: `true`, or `{maxSteps, maxCostUsd, tools, commands}`. The model looks "
              "around the workspace (read, list, search) and, for a `code` phase, stages edits, before it "
              "answers; the change is still shown and applied at once. Needs a model known to call tools. "
              "Unset: one request, one answer."))


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


def _origin(value: str) -> str:
    """An http(s) origin, in the catalogue's normal form (``origin_of``: lower-cased, default
    port dropped), so it compares equal to the origin a route's base URL has."""
    from phasewise.providers.catalogue import origin_of  # a data module, as in ``key_env_hint``

    m = re.match(r"^(https?)://([^/\s?#@]+)(/.*)?$", value.strip(), re.IGNORECASE)
    if m is None or (m.group(3) or "/") != "/":
        raise ValueError(f"expected an origin such as 'https://llm.example.com' or 'http://127.0.0.1:4000', "
                         f"got {value!r}")
    return origin_of(value)


def _expandable(setting: str) -> Any:
    """A validator: a path the user chose for Phasewise's own files must expand (``~``, ``$VAR``) to
    an absolute path (``gate.user_path``), else the setting is a ``config`` issue."""
    def check(value: Any) -> Any:
        if isinstance(value, str) and value.strip():
            from phasewise.gate import PathRefused, user_path

            try:
                user_path(value, setting=setting)
            except PathRefused as refused:
                raise ValueError(f"{refused.path} {refused.reason}") from None
        return value

    return check


class SecuritySettings(_Model):
    """Where keys may be sent. User-level only: a workspace's value is ignored."""

    allowed_key_origins: list[str] = Field(
        default_factory=list,
        description="Origins (`scheme://host[:port]`) allowed to receive keys beyond where they go by "
        "default (a catalogue provider's key to its catalogue origins, any other key to loopback): a proxy "
        "or gateway you run. Without it, settings that send a key elsewhere are refused (a repository's "
        "`.vscode/settings.json` could otherwise redirect your key). Honoured only from "
        "user-level settings (VS Code user settings, Neovim's `setup()`, the command line's user settings "
        "file), never from a workspace.",
    )

    @field_validator("allowed_key_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [_origin(v) for v in value]


class NetworkSettings(_Model):
    """TLS and proxy settings for every provider. User-level only: a workspace's value is ignored."""

    ca_bundle: Annotated[str | None, BeforeValidator(_expandable("network.caBundle"))] = Field(
        None,
        description="A PEM file of extra CA certificates to trust besides the system's (a corporate TLS "
        "proxy's root, a private gateway's CA). Certificates are always verified. Honoured only from "
        "user-level settings.",
    )
    proxy: str | None = Field(
        None,
        description="HTTP(S) proxy for provider requests (`http://proxy.example.com:3128`); hosts listed in "
        "`NO_PROXY` go direct. Unset: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` from the "
        "environment apply. Proxy credentials belong in `HTTPS_PROXY`, not here. Honoured only from "
        "user-level settings.",
    )

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        m = re.match(r"^(https?)://([^/\s]+)/?$", value.strip(), re.IGNORECASE)
        if m is None:
            raise ValueError("expected a proxy URL such as 'http://proxy.example.com:3128'")
        if "@" in m.group(2):
            raise ValueError("credentials in the proxy URL would put a secret in settings: set the proxy URL "
                             "with its credentials in the HTTPS_PROXY environment variable instead")
        return value.strip().rstrip("/")


class CacheSettings(_Model):
    """Phasewise's own cache of answers (the provider's prompt cache is `promptCaching`)."""

    responses: bool = Field(
        False, description="Answer an identical request on the same route (same prompt, same files, same settings) "
        "from a local cache under the user's cache directory instead of asking the provider again.",
    )
    ttl_seconds: float = Field(
        3600, gt=0, le=30 * 86400, description="How long a cached answer is used, in seconds.",
    )


# Settings honoured only from the user's own settings (by alias), and why a workspace may not set them.
USER_LEVEL_FIELDS: dict[str, str] = {
    "security": "decides where keys may go",
    "network": "decides how connections are checked (CA bundle, proxy)",
    "ledgerPath": "chooses a file outside the workspace that Phasewise writes to",
}


class Settings(_Model):
    """The `phasewise` settings section."""

    phases: dict[str, PhaseSettings] = Field(
        default_factory=dict,
        description="Per-phase routing: `plan`, `code`, `review`, and any phase of your own.",
    )
    pipeline: list[str] = Field(
        default_factory=lambda: list(BUILTIN_PHASES),
        min_length=1,
        description="The phases `phasewise.run` runs, in order: each gets what came before (the plans to "
        "`code`-kind phases, the change so far to `review`-kind ones). E.g. "
        "`[\"spec\", \"plan\", \"code\", \"test\", \"review\"]`.",
    )
    fix_rounds: int = Field(
        0, ge=0, le=10,
        description="In a run whose pipeline has a `qa`-kind phase after a `code`-kind one: how many times the "
        "code phase may run again with the qa phase's findings when the checks fail, each round checked "
        "again. The whole run works on a scratch copy of the workspace, and its one change is offered "
        "at the end (marked as failing if the last checks failed). 0: no fix round.",
    )
    providers: dict[str, ProviderSettings] = Field(
        default_factory=dict, description="Overrides of catalogue providers and new providers, by id."
    )
    commands: dict[str, CommandIn] = Field(
        default_factory=dict,
        description="Named commands phases may run (`phases.<p>.agent.commands`): a command line, or "
        "`{run, timeoutSeconds, cwd}`, e.g. `{\"test\": \"pytest -q\", \"lint\": \"ruff check .\"}`. Commands "
        "from your user-level settings run unasked; any other (a workspace's) only after you allowed that exact "
        "command line for that workspace. Run in their own process group, without provider keys in the "
        "environment, inside the workspace, output capped.",
    )
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retry policy.")
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings, description="Timeouts.")
    default_model: ModelRefIn | None = Field(
        None, description="Model for every phase without one. Unset: Anthropic's Claude."
    )
    plans_directory: str | None = Field(
        None, description="Where plans are written for editors without a Phasewise plugin (shown with "
        "`window/showDocument`), relative to the workspace folder, and inside it (a folder outside, or reached "
        "through a link out of it, is refused). Unset: `.phasewise/plans`.",
    )
    ledger_path: Annotated[str | None, BeforeValidator(_expandable("phasewise.ledgerPath"))] = Field(
        None, description="File the run record is appended to (an absolute path; `~` and `$VARIABLES` "
        "expand). Unset: `PHASEWISE_LEDGER`, else the user's state directory. User-level only: a workspace's "
        "value is ignored, since it chooses a file outside the workspace that Phasewise writes to.",
    )
    record_content: bool = Field(
        False, description="Whether the run record keeps prompts and answers (off: metadata only)."
    )
    prompt_caching: bool = Field(
        True, description="Lay requests out for the providers' prompt caches and mark them: Anthropic "
        "`cache_control` on the shared prefix, OpenAI `prompt_cache_key`. Off: no cache marks and no shared tools.",
    )
    cache: CacheSettings = Field(
        default_factory=CacheSettings, description="Local cache of answers (off unless `cache.responses`).",
    )
    security: SecuritySettings = Field(
        default_factory=SecuritySettings,
        description="Where keys may be sent (user-level only: ignored in workspace settings).",
    )
    network: NetworkSettings = Field(
        default_factory=NetworkSettings,
        description="CA bundle and proxy for provider requests (user-level only: ignored in workspace settings).",
    )
