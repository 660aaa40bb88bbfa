"""One shape for every failure: the contract's problem kinds, and the errors that carry them.

Every exception Phasewise raises on purpose has one root. The tree, as the code has it::

    PhasewiseError                  the root: something Phasewise can say in words (``str(err)``)
    ├── ProblemError                a phase that cannot be served; ``.problem`` is the contract's problem
    │   └── RouteFailed             (router) no route could serve it; ``.attempts`` says what was tried
    ├── ProviderError               (raised by provider adapters) the provider's failure, classified:
    │   │                           ``kind``, the provider's words, status, retry-after, what streamed;
    │   │                           before the router knows which phase or route asked
    │   ├── CertificateError        (providers.base) the TLS certificate did not verify: never retried
    │   └── StaleConnection         (providers.base) a pooled connection closed before any answer
    ├── AnswerError                 (phases) the model's structured answer cannot be used (nothing applied)
    │   ├── EditFailure             (phases.edits) edits that do not apply to the files; one repair round
    │   └── CutAtLimit              (phases.answers) a code answer stopped at the output limit
    ├── InputError                  what a person or a client gave cannot be used; says which and why
    │   ├── CommandError            (edge) arguments of a command: answered as JSON-RPC -32602
    │   ├── SettingsFileError       (workflows.config) a settings file the command line cannot read
    │   ├── UsageError              (cli.common) arguments of the ``phasewise`` command: exit status 2
    │   └── PathRefused             (gate) a path the workspace may not read or write: nothing is
    │                               read or written there; ``.path``, ``.reason``, ``.setting``
    ├── NotALedger                  (workflows.ledger) the file named for the run record holds
    │                               something else: nothing is appended to it
    ├── ScratchRefused              (phases.scratch) a scratch copy that cannot be made (too many
    │                               files, too large): nothing is left of it, no command ran there
    ├── ClientSilent                (edge.requests) no usable answer from the editor to a request of
    │   │                           the server's: silence past its deadline, an error, or an odd reply
    │   └── ClientReplyUnreadable   (edge.requests) a reply that does not fit its request's type
    └── KeyStoreError               (keystore) the OS keyring cannot do what was asked

``InputError`` and ``AnswerError`` are also ``ValueError``s, ``NotALedger`` an ``OSError``. Every
``Problem`` message names the provider, the phase and the model and says what to do; none ever
holds a key (``redact`` is applied to anything a provider echoes back). The simulator
(``phasewise.sim``) is a fake provider, not Phasewise: its errors are its own and end as its HTTP
answers.

Kinds fall in three groups the router acts on: ``TRANSIENT_KINDS`` (wait and retry, then fall
back), ``KEY_ROTATION_KINDS`` (try the provider's next key first) and the rest, which are final
for the route that produced them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from phasewise.serial import Jsonable, camel, json_rule


class ProblemKind(StrEnum):
    """The 16 kinds of the contract, in its order, and one extension (see the README)."""

    MISSING_CREDENTIALS = "missing-credentials"
    AUTH = "auth"
    PERMISSION = "permission"
    BILLING = "billing"
    RATE_LIMIT = "rate-limit"
    OVERLOADED = "overloaded"
    MODEL_NOT_FOUND = "model-not-found"
    CONTEXT_LENGTH = "context-length"
    CAPABILITY = "capability"
    CONTENT_FILTER = "content-filter"
    BAD_REQUEST = "bad-request"
    SERVER_ERROR = "server-error"
    TIMEOUT = "timeout"
    NETWORK = "network"
    CONFIG = "config"
    CANCELLED = "cancelled"
    # Extension of the contract: the document changed while the code phase ran (nothing applied).
    DOCUMENT_CHANGED = "document-changed"


# Kinds where waiting and asking again can help; every other kind is final for that route.
TRANSIENT_KINDS = frozenset(
    {
        ProblemKind.RATE_LIMIT,
        ProblemKind.OVERLOADED,
        ProblemKind.SERVER_ERROR,
        ProblemKind.NETWORK,
        ProblemKind.TIMEOUT,
    }
)

# Kinds where another key of the same provider may succeed (a second account, a second quota).
KEY_ROTATION_KINDS = frozenset({ProblemKind.RATE_LIMIT, ProblemKind.BILLING})

_SECRETISH = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{16,}|(?i:bearer)\s+[A-Za-z0-9._\-]{12,}"
    r"|[A-Za-z0-9]{32,}\.[A-Za-z0-9]{8,}|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|AIza[0-9A-Za-z_\-]{30,})"
)


# Every key value this process has been handed (environment, editor, secret store): masked
# wherever it shows up, whatever its shape. Values only; never logged, never serialised.
_KNOWN_SECRETS: set[str] = set()
# Names that end like a credential's (``OPENAI_API_KEY``, ``ANTHROPIC_AUTH_TOKEN``); not
# ``SSH_KEY_PATH``, whose value (a path) may well appear in a document and must not be masked in
# an edit. A variable any route names as its key is registered when it is read (``Keyring``).
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)S?$", re.IGNORECASE)
_PATHLIKE = re.compile(r"^(~|/|[A-Za-z]:[\\/]|\.{1,2}/)")  # a file's path is not a key
_MIN_SECRET = 6  # shorter values would mask ordinary words


_KNOWN_SORTED: tuple[str, ...] = ()  # _KNOWN_SECRETS, longest first: rebuilt when one is added


def register_secret(*values: str | None) -> None:
    """Remember key values so that ``redact`` masks them everywhere (editor keys, keyring keys).
    Registering a value again costs a set lookup."""
    global _KNOWN_SORTED
    new = {v.strip() for v in values if isinstance(v, str) and len(v.strip()) >= _MIN_SECRET} - _KNOWN_SECRETS
    if new:
        _KNOWN_SECRETS.update(new)
        # longest first, so a key that contains another is masked whole
        _KNOWN_SORTED = tuple(sorted(_KNOWN_SECRETS, key=len, reverse=True))


def secret_env_name(name: str) -> bool:
    """Whether an environment variable's name is a credential's (``*_API_KEY``, ``*_TOKEN``, …)."""
    return bool(_SECRET_ENV.search(name))


def register_environment_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Remember the values of environment variables named like keys (``*_API_KEY``, ``*_TOKEN`` …)."""
    env = os.environ if environ is None else environ
    register_secret(*(v for k, v in env.items() if _SECRET_ENV.search(k) and not _PATHLIKE.match(v)))


_ENV_READ = False


def known_secrets() -> tuple[str, ...]:
    """Every registered key value, longest first; the same tuple until a new one is registered."""
    global _ENV_READ
    if not _ENV_READ:
        _ENV_READ = True
        register_environment_secrets()
    return _KNOWN_SORTED


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every known secret and anything shaped like an API key masked.

    Apply it before cutting a text short: a key cut in half is no longer recognisable."""
    if not isinstance(text, str):
        text = str(text)
    for secret in (*secrets, *known_secrets()):
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, "[redacted]")
    return _SECRETISH.sub("[redacted]", text)


def redact_known(text: str) -> str:
    """Only the exact key values masked (for text such as code, where key *shapes* are legitimate)."""
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


@dataclass(slots=True)
class Problem(Jsonable):
    """Why a phase could not be served, and the way out. Serialises to the contract's shape.

    Extensions of the contract's fields: ``retryAt`` (local ISO time the wait ends, with
    ``retryAfterSeconds``), ``keyEnv`` (the env var *name* of the key involved), ``setting`` (the
    setting to look at), ``status`` (HTTP), ``fallbacks`` (configured fallback models).
    ``partial_text`` is what streamed before a mid-stream failure: the phase result carries it as
    its ``text`` (marked ``incomplete``), so it is not serialised a second time here.
    """

    __json_omit__: ClassVar[str] = "empty"

    kind: ProblemKind
    message: str = field(metadata=json_rule(encode=redact))
    phase: str | None = None
    provider: str | None = None
    model: str | None = None
    retry_after_seconds: float | None = field(default=None, metadata=json_rule(round=3))
    retry_at: str | None = None
    request_id: str | None = None
    key_env: str | None = None
    setting: str | None = None
    status: int | None = None
    fallbacks: list[str] = field(default_factory=list)
    partial_text: str | None = field(default=None, metadata=json_rule(skip=True))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Problem:
        names = {camel(f.name): f.name for f in fields(cls)}
        kwargs = {names[k]: v for k, v in data.items() if k in names}
        kwargs["kind"] = ProblemKind(kwargs["kind"])
        return cls(**kwargs)


class PhasewiseError(Exception):
    """The root of every error Phasewise raises on purpose (the tree is in the module docstring)."""


class ProblemError(PhasewiseError):
    """A problem that ends a phase."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class InputError(PhasewiseError, ValueError):
    """Input from a person or a client that cannot be used; the message says which and why."""


class ProviderError(PhasewiseError):
    """What a provider adapter saw go wrong, classified, before phase and route are attached.

    ``detail`` is the provider's own words (redacted); ``retry_after`` is seconds the provider
    asked us to wait, when it said; ``partial_text`` is the visible text streamed before the
    failure and ``after_output`` says some was: such a failure is never retried nor sent to a
    fallback, because the user has already seen part of an answer (a mid-stream failure before
    any visible text is retried like any other transient failure).
    """

    def __init__(
        self,
        kind: ProblemKind,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        partial_text: str | None = None,
        after_output: bool = False,
        account_wide: bool = False,
        plan_limit: bool = False,
        resets_at: datetime | None = None,
    ) -> None:
        super().__init__(detail)
        # billing: the plan's allowance (a window or tier), not the balance; and when it comes back
        self.plan_limit = plan_limit
        self.resets_at = resets_at
        # the provider said the limit is the whole account's, not the model's (see router.Cooldowns)
        self.account_wide = account_wide
        self.kind = kind
        self.detail = detail
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.request_id = request_id
        self.partial_text = partial_text
        self.after_output = after_output
