"""Typed command arguments, converted once, and the one way a command is registered.

Each command takes one argument object, declared here as an attrs class (pygls's
``examples/servers/commands.py`` pattern). ``register_command`` converts the client's arguments
to that class with pygls's converter (strict: text must be text, lists must be lists), then
calls the feature's method; arguments that cannot be used get a JSON-RPC ``-32602`` whose
message names the command and the field: ``phasewise.plan: `uri` is required (the document's URI)``.
A ``CommandError`` raised by the method (a document that is not open, nothing to retry) is
answered the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import default_converter

from phasewise.problems import InputError
from phasewise.serial import snake

if TYPE_CHECKING:
    from phasewise.edge.server import PhasewiseServer
    from phasewise.phases.documents import LineRange

A = TypeVar("A")


class CommandError(InputError):
    """Arguments of a command that cannot be used; answered as InvalidParams."""


def _doc(error: str, required: str | None = None) -> dict[str, str]:
    return {"error": error, "required": required or error}


_URI = _doc("`uri` is required (the document's URI)")
_ORIGIN = _doc("`origin` must be `user` (typed by the user) or `document` (taken from the repository)")
_RANGE = _doc("`range` must be an LSP range {start: {line, character}, end: …}")
_WAIT = _doc("`wait` must be true or false (true: answer with the whole result, not at once)")


@attrs.frozen
class PhaseArgs:
    """``{uri, range?, instruction, plan?, model?, origin?}``: one phase on a document (``model``:
    retry on another model, e.g. a fallback; ``origin``: ``document`` when the instruction was taken
    from the repository, as code actions' are, else it is the user's own words)."""

    EXPECTED = "{uri, instruction, range?}"

    uri: str = attrs.field(metadata=_URI)
    instruction: str | None = attrs.field(default="", converter=lambda v: v or "", metadata=_doc(
        "`instruction` must be text (what the phase should do)"))
    range: types.Range | None = attrs.field(default=None, metadata=_RANGE)
    plan: str | None = attrs.field(default=None, metadata=_doc("`plan` must be text"))
    model: str | None = attrs.field(default=None, metadata=_doc("`model` must be a model reference "
                                                                "'provider/model'"))
    origin: str | None = attrs.field(default=None, metadata=_ORIGIN)
    wait: bool = attrs.field(default=False, metadata=_WAIT)

    def check(self) -> str | None:
        if not self.uri:
            return _URI["required"]
        if self.origin not in (None, "user", "document"):
            return _ORIGIN["error"]
        if self.range is not None and _before(self.range.end, self.range.start):
            return "`range` ends before it starts"
        return None

    def require_instruction(self) -> None:
        if not (self.instruction or "").strip():
            raise CommandError("`instruction` is required (what the phase should do)")

    @property
    def users_words(self) -> bool:
        """Whether the instruction is the user's own (only then may it name credential files)."""
        return self.origin != "document"

    def line_range(self) -> LineRange | None:
        from phasewise.phases.documents import LineRange

        return None if self.range is None else LineRange(self.range.start.line, self.range.end.line)


@attrs.frozen
class NamedPhaseArgs(PhaseArgs):
    """``{phase, uri, range?, instruction?, plan?}``: any phase by name, built-in or the user's own."""

    EXPECTED = "{phase, uri, instruction, range?}"

    phase: str = attrs.field(default="", metadata=_doc("`phase` is required (plan, code, review or one of yours)"))

    def check(self) -> str | None:
        if not self.phase:
            return "`phase` is required (plan, code, review or one of yours)"
        return super().check()


@attrs.frozen
class CompareArgs(PhaseArgs):
    """``{uri, range?, instruction, phase, models}``; ``models`` may also be one comma-separated string."""

    EXPECTED = "{uri, instruction, phase, models, range?}"

    phase: str = attrs.field(default="", metadata=_doc("`phase` is required (plan, code, review or one of yours)"))
    models: list[str] | str = attrs.field(factory=list, metadata=_doc(
        "`models` must be a list of model references 'provider/model'"))

    def check(self) -> str | None:
        if not self.phase:
            return "`phase` is required (plan, code, review or one of yours)"
        if not self.model_list():
            return "`models` must be a list of model references 'provider/model'"
        return super().check()

    def model_list(self) -> list[str]:
        models = self.models
        if isinstance(models, str):
            return [m.strip() for m in models.split(",") if m.strip()]
        return models if all(models) else []


@attrs.frozen
class RetryArgs:
    """``{uri, phase, model?}``: the document's last run of that phase, again."""

    EXPECTED = "{uri, phase, model?}"

    uri: str = attrs.field(metadata=_doc("expected {uri, phase, model?}"))
    phase: str = attrs.field(metadata=_doc("expected {uri, phase, model?}"))
    model: str | None = attrs.field(default=None, metadata=_doc("expected {uri, phase, model?}"))
    wait: bool = attrs.field(default=False, metadata=_WAIT)

    def check(self) -> str | None:
        return None


@attrs.frozen
class FindingArgs:
    """``{uri, id}``: one finding on a document, by its diagnostic's ``data.id``."""

    EXPECTED = "{uri, id}"

    uri: str = attrs.field(metadata=_URI)
    id: str = attrs.field(metadata=_doc("`id` must be text: the finding's `data.id`",
                                        "`id` is required (the finding's `data.id`)"))

    def check(self) -> str | None:
        if not self.uri:
            return _URI["required"]
        if not self.id:
            return "`id` is required (the finding's `data.id`)"
        return None


@attrs.frozen
class VerifyArgs:
    """``{uri?, providers?}``."""

    EXPECTED = "{uri?, providers?}"
    OPTIONAL = True

    uri: str | None = attrs.field(default=None, metadata=_doc("`uri` must be the document's URI"))
    providers: list[str] | None = attrs.field(default=None, metadata=_doc(
        "`providers` must be a list of provider ids"))

    def check(self) -> str | None:
        return None


@attrs.frozen
class ModelsArgs:
    """``{provider, uri?}``."""

    EXPECTED = "{provider, uri?}"

    provider: str = attrs.field(metadata=_doc("expected {provider, uri?}"))
    uri: str | None = attrs.field(default=None, metadata=_doc("expected {provider, uri?}"))

    def check(self) -> str | None:
        return None if self.provider else "expected {provider, uri?}"


@attrs.frozen
class StatusArgs:
    """``{uri?}``; anything else is read as no document."""

    EXPECTED = "{uri?}"
    OPTIONAL = True
    LENIENT = True  # status always answers: arguments it cannot use mean "no document"

    uri: str | None = attrs.field(default=None, metadata=_doc("`uri` must be the document's URI"))

    def check(self) -> str | None:
        return None


@attrs.frozen
class ShowSettingsArgs:
    """``{setting?, uri?}``: open the settings file Phasewise reads for ``uri`` at ``setting``."""

    EXPECTED = "{setting?, uri?}"
    OPTIONAL = True

    setting: str = attrs.field(default="phasewise", metadata=_doc("`setting` must be a key path such as "
                                                                  "phasewise.phases.plan"))
    uri: str | None = attrs.field(default=None, metadata=_doc("`uri` must be the document's URI"))

    def check(self) -> str | None:
        return None


@attrs.frozen
class KeyHelpArgs:
    """``{env?, provider?, phase?}``: say where a provider's key goes."""

    EXPECTED = "{env?, provider?, phase?}"
    OPTIONAL = True

    env: str | None = attrs.field(default=None, metadata=_doc("`env` must be an environment variable's name"))
    provider: str | None = attrs.field(default=None, metadata=_doc("`provider` must be a provider id"))
    phase: str | None = attrs.field(default=None, metadata=_doc("`phase` must be a phase name"))

    def check(self) -> str | None:
        return None


@attrs.frozen
class SetKeysParams:
    """``phasewise/setKeys``: keys an editor's secret store hands over, by env var name (an empty
    value forgets the key). Never logged, never stored on disk."""

    keys: dict[str, str | None]

    def check(self) -> str | None:
        return None


@attrs.define
class SetKeysNotification:
    """The ``phasewise/setKeys`` message, typed for pygls (``get_message_type``)."""

    METHOD = "phasewise/setKeys"
    INVALID = "phasewise/setKeys without a {keys: {ENV: value}} object: ignored"

    params: SetKeysParams
    method: str = METHOD
    jsonrpc: str = "2.0"


def _before(a: types.Position, b: types.Position) -> bool:
    return a.line < b.line


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {type(value).__name__}")
    return value


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _strict_texts(value: Any, _: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of text")
    return list(value)


def _texts_or_text(value: Any, _: Any) -> list[str] | str:
    return value if isinstance(value, str) else _strict_texts(value, _)


def _keys(value: Any, _: Any) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise TypeError("expected an object {ENV_NAME: key}")
    return {str(k): (None if v is None else str(v)) for k, v in value.items()}


def _make_converter() -> cattrs.Converter:
    """pygls's converter (lsprotocol's types, camelCase names), strict about scalars: it would
    otherwise turn ``5`` into ``"5"`` and a string into a list of its letters."""
    converter = default_converter()
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(bool, _strict_bool)
    for kind, hook in ((list[str], _strict_texts), (list[str] | str, _texts_or_text),
                       (dict[str, str | None], _keys)):
        converter.register_structure_hook_func(lambda t, kind=kind: t == kind, hook)
    return converter


CONVERTER = _make_converter()


def convert(cls: type[A], arguments: tuple[Any, ...]) -> A:
    """The command's one argument object as ``cls``, or a ``CommandError`` naming the field."""
    lenient = getattr(cls, "LENIENT", False)
    if not arguments and getattr(cls, "OPTIONAL", False):
        raw: Any = {}
    elif len(arguments) == 1 and isinstance(arguments[0], dict):
        raw = arguments[0]
    elif lenient:
        raw = {}
    else:
        raise CommandError(f"expected one argument object {getattr(cls, 'EXPECTED', '')}".rstrip())
    try:
        value = CONVERTER.structure(raw, cls)
    except Exception as exc:
        if lenient:
            return CONVERTER.structure({}, cls)
        raise CommandError(_field_message(cls, exc)) from None
    problem = value.check()  # type: ignore[attr-defined]
    if problem:
        raise CommandError(problem)
    return value


def _field_message(cls: type[Any], exc: Exception) -> str:
    """The message of the first field that failed, from its metadata."""
    fields = {f.name: f for f in attrs.fields(cls)}
    try:
        errors = cattrs.transform_error(exc) if isinstance(exc, cattrs.BaseValidationError) else []
    except Exception:  # an error cattrs cannot describe
        errors = []
    for error in errors:
        message, _, path = error.rpartition(" @ ")
        name = path.removeprefix("$.").split(".", 1)[0].split("[", 1)[0]
        found = fields.get(name) or fields.get(snake(name))
        if found is not None:
            meta = found.metadata
            return str(meta.get("required" if message == "required field missing" else "error", message))
    return f"expected one argument object {getattr(cls, 'EXPECTED', '')}".rstrip()


def invalid(command: str, message: str) -> JsonRpcInvalidParams:
    return JsonRpcInvalidParams.of(ValueError(f"{command}: {message}"))


def register_command(ls: PhasewiseServer, name: str, args_type: type[A],
                     method: Callable[[A], Awaitable[Any]]) -> None:
    """``name`` runs ``method`` with its arguments converted to ``args_type``."""

    # Deliberately unannotated: pygls reads a command handler's signature and type hints on every
    # call, and annotations it would have to evaluate cost a quarter of a millisecond each time.
    async def handler(ls, *arguments):
        try:
            return await method(convert(args_type, arguments))
        except CommandError as err:
            raise invalid(name, str(err)) from None

    ls.command(name)(handler)


__all__ = [
    "CONVERTER",
    "CommandError",
    "CompareArgs",
    "FindingArgs",
    "KeyHelpArgs",
    "ModelsArgs",
    "NamedPhaseArgs",
    "PhaseArgs",
    "RetryArgs",
    "SetKeysNotification",
    "SetKeysParams",
    "ShowSettingsArgs",
    "StatusArgs",
    "VerifyArgs",
    "convert",
    "invalid",
    "register_command",
]
