"""What every protocol adapter shares: the request and answer types, the connection pool, the
mapping of SDK exceptions to problem kinds, the streaming clock (first-token / idle timeouts), and
``SdkAdapter`` (one model listing, one retry on a stale connection) with ``finish_answer`` (one
tool-input parser, one empty-answer check) that both adapters end every answer with.

Adapters know nothing of phases: they take a ``ChatRequest`` and give a ``Completion`` or raise
a classified ``ProviderError``, whatever went wrong (an SDK exception, a transport error, an
error inside a 200 stream, a page that is not the protocol, a stall). SDKs and httpx2 are
imported lazily (inside functions), so the language server answers ``initialize`` before paying
for them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from phasewise.problems import ProblemKind, ProviderError, redact
from phasewise.providers.catalogue import host_of, origin_of
from phasewise.providers.classify import Origin, classify, is_html, minimax_status
from phasewise.providers.turns import ToolCall, Turn

if TYPE_CHECKING:
    import httpx2

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed to open the connection, to the first streamed token (counted from the
    request, headers included) and between two streamed items after that."""

    connect: float = 10.0
    first_token: float = 120.0
    idle: float = 60.0


class ToolLike(Protocol):
    """A tool the model must call (the phases' ``ToolSpec``), seen structurally so providers
    need not import phases."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def schema(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One model call, protocol neutral.

    Prompt caching: ``tools`` (declared, the same in every phase of a run), ``system`` and
    ``context`` (the documents) are the stable prefix, ``user`` what changes. ``tool`` is the
    tool the model must call (None with ``tools``: it may call none). Each adapter places
    ``context`` where its protocol caches it: Anthropic at the end of the system text, marked
    with ``cache_control`` when ``cache_prefix``; OpenAI at the start of the user message.
    ``cache_key`` is sent as ``prompt_cache_key`` (only to providers that take it).

    A phase working in steps sends the transcript after the first user message as ``turns``
    (``providers.turns``: the model's answers with their tool calls, then the calls' results),
    rendered in the adapter's protocol; ``tools`` are then the agent's tools, ``tool`` None and
    ``may_call_tools`` set (``tool_choice`` auto: any of them, or text). With ``cache_prefix`` such a
    step's end is marked too, so each step reads the one before from the cache."""

    model: str
    system: str
    user: str
    max_tokens: int
    tool: ToolLike | None = None
    temperature: float | None = None
    stream: bool = True
    context: str = ""
    tools: tuple[ToolLike, ...] = ()
    cache_prefix: bool = False
    cache_key: str | None = None
    turns: tuple[Turn, ...] = ()
    may_call_tools: bool = False

    def declared_tools(self) -> tuple[ToolLike, ...]:
        """The tools the request declares: ``tools``, else the one it must call."""
        return self.tools or ((self.tool,) if self.tool is not None else ())

    @property
    def expects_text(self) -> bool:
        """The answer must be text: no tool is required and none may be called (those declared
        are there for the prompt cache's sake)."""
        return self.tool is None and not self.may_call_tools


@dataclass(slots=True)
class Usage:
    """Tokens of one call. ``input_tokens`` counts every prompt token, cached or not (each
    protocol's figures are brought to that form); ``cache_read_tokens`` of them were read from
    the provider's prompt cache, ``cache_write_tokens`` written to it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(slots=True)
class Completion:
    """What a model answered, and what the call revealed about the provider's limits."""

    text: str = ""
    tool_input: dict[str, Any] | None = None  # the first call's (the one a phase's tool answer is)
    tool_input_raw: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)  # every call of the answer, in order
    usage: Usage = field(default_factory=Usage)
    first_token_ms: float | None = None
    total_ms: float = 0.0
    request_id: str | None = None
    stop_reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def tool_only(self) -> bool:
        """The answer is tool calls and no text (wrong where text was asked: a server that ignores
        ``tool_choice``)."""
        return bool(self.tool_calls) and not self.text.strip()

    @property
    def cut_at_limit(self) -> bool:
        """The answer stopped at the output limit (Chat Completions' ``length``, Messages' ``max_tokens``)."""
        return self.stop_reason in ("length", "max_tokens")


class TextSink(Protocol):
    def __call__(self, delta: str) -> None: ...


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """How connections are made: extra CA certificates to trust (a PEM file) and a proxy.

    Certificate verification is always on. Without ``proxy``, httpx2's own environment handling
    applies (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``,
    ``SSL_CERT_DIR``); with it, every origin not matched by ``NO_PROXY`` goes through it."""

    ca_bundle: str | None = None
    proxy: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to call: one provider's base URL and one key; ``family`` is whose error
    codes it speaks (``catalogue.family_of``), so its failures are read with its own meanings."""

    provider: str
    base_url: str
    key: str | None
    auth_token: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    network: NetworkConfig = NetworkConfig()
    family: str = ""


class Adapter(Protocol):
    async def complete(
        self, endpoint: Endpoint, request: ChatRequest, on_text: TextSink, timeouts: Timeouts
    ) -> Completion: ...

    async def list_models(self, endpoint: Endpoint, timeouts: Timeouts) -> list[str]: ...


class SdkAdapter:
    """What both SDK adapters share: SDK clients built once over the pool, one fresh connection
    when a pooled one was stale, and the model listing. A protocol says how to build its client
    (``_client``) and how to make one call (``_complete``)."""

    protocol: ClassVar[str]

    def __init__(self, clients: SdkClients) -> None:
        self._clients = clients

    def _client(self, endpoint: Endpoint) -> Any:
        raise NotImplementedError

    async def _complete(
        self, endpoint: Endpoint, request: ChatRequest, on_text: TextSink, timeouts: Timeouts
    ) -> Completion:
        raise NotImplementedError

    async def complete(
        self, endpoint: Endpoint, request: ChatRequest, on_text: TextSink, timeouts: Timeouts
    ) -> Completion:
        return await fresh_on_stale(lambda: self._complete(endpoint, request, on_text, timeouts))

    async def list_models(self, endpoint: Endpoint, timeouts: Timeouts) -> list[str]:
        """The model ids the endpoint lists (both SDKs page them the same way), sorted."""
        client = self._client(endpoint)

        async def once() -> list[str]:
            try:
                page = await StreamClock(timeouts).within_first(client.models.list(timeout=sdk_timeout(timeouts)))
                return sorted(m.id for m in page.data)
            except Exception as exc:
                raise call_failed(exc, (endpoint.key or "",), streamed="", mid_stream=False,
                                  origin=Origin(endpoint.family, self.protocol)) from None

        return await fresh_on_stale(once)


def tool_input_of(raw: str | None) -> dict[str, Any] | None:
    """A tool call's arguments as the object they spell (empty arguments: ``{}``); None when there
    was no call or the arguments are not a JSON object (the phase then says what it missed)."""
    if raw is None:
        return None
    try:
        parsed = json.loads(raw or "{}")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def finish_answer(out: Completion, clock: StreamClock) -> Completion:
    """The end every protocol's answer shares, once its own stop checks passed: the timings, the
    first tool call's input parsed (a phase's single tool answer), and an answer with neither text
    nor a tool call refused as a failure (never a short success)."""
    out.first_token_ms = clock.first_token_ms
    out.total_ms = clock.elapsed_ms()
    if out.tool_calls and out.tool_input_raw is None:
        out.tool_input_raw = out.tool_calls[0].arguments
    out.tool_input = tool_input_of(out.tool_input_raw)
    if not out.text.strip() and out.tool_input_raw is None:
        raise ProviderError(
            ProblemKind.SERVER_ERROR, "the provider returned an empty answer",
            request_id=out.request_id,
        )
    return out


class _ConnectionTrace:
    """httpcore2's ``trace`` extension for one request: did it open a new connection?

    A request that fails before any response on a connection it did *not* open was sent on a
    pooled keep-alive connection the server had already closed (a race every HTTP client meets).
    """

    __slots__ = ("opened",)

    def __init__(self) -> None:
        self.opened = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.startswith("connection.connect_"):
            self.opened = True


async def _trace_request(request: httpx2.Request) -> None:
    request.extensions = {**request.extensions, "trace": _ConnectionTrace()}


def reused_connection_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection failure, before any response, on a reused connection."""
    names = {c.__name__ for c in type(exc).__mro__}
    if not ({"APIConnectionError", "RemoteProtocolError", "ReadError", "WriteError"} & names):
        return False
    if "APITimeoutError" in names or "TimeoutException" in names:
        return False
    try:
        request = exc.request  # type: ignore[attr-defined]
    except Exception:  # httpx2 raises when the error carries no request
        return False
    trace = getattr(request, "extensions", {}).get("trace")
    return isinstance(trace, _ConnectionTrace) and not trace.opened


class CertificateError(ProviderError):
    """The provider's TLS certificate did not verify: never retried (it will not verify next time)."""


def ssl_context(network: NetworkConfig) -> Any:
    """httpx2's default verifying context (the system's CAs, ``SSL_CERT_FILE``/``SSL_CERT_DIR``),
    plus the certificates of ``network.ca_bundle``. A bundle that cannot be loaded is a ``config``
    failure, raised as a ``ProviderError``."""
    import httpcore2

    ctx = httpcore2.default_ssl_context()
    if network.ca_bundle:
        import ssl
        from pathlib import Path

        path = Path(network.ca_bundle).expanduser()
        try:
            ctx.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ProviderError(
                ProblemKind.CONFIG,
                f"`phasewise.network.caBundle` ({path}) cannot be loaded as PEM CA certificates "
                f"({type(exc).__name__})",
            ) from None
    return ctx


def _bypasses_proxy(base_url: str) -> bool:
    """Whether ``NO_PROXY`` (or ``no_proxy``) lists this URL's host."""
    import urllib.request

    try:
        bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 (not in typeshed)
        return bool(bypass(host_of(base_url)))
    except Exception:
        return False


class HttpPool:
    """One pooled ``httpx2.AsyncClient`` per provider origin (and network configuration),
    reused by every request and phase.

    Each request is traced (no I/O, a flag) so an adapter can tell a stale pooled connection
    from a provider that cannot be reached: see ``reused_connection_failed``.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[str, NetworkConfig], httpx2.AsyncClient] = {}

    def client(self, base_url: str, network: NetworkConfig | None = None) -> httpx2.AsyncClient:
        network = network or NetworkConfig()
        key = (origin_of(base_url), network)
        found = self._clients.get(key)
        if found is None or found.is_closed:
            import httpx2

            extra: dict[str, Any] = {}
            if network.ca_bundle:
                extra["verify"] = ssl_context(network)
            if network.proxy and not _bypasses_proxy(base_url):
                extra["proxy"] = network.proxy
            found = httpx2.AsyncClient(
                limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50),
                timeout=httpx2.Timeout(connect=10.0, read=None, write=30.0, pool=30.0),
                follow_redirects=True,
                event_hooks={"request": [_trace_request]},
                **extra,
            )
            self._clients[key] = found
        return found

    def __len__(self) -> int:
        return len(self._clients)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            await c.aclose()


class SdkClients:
    """SDK clients built once per (protocol, endpoint) over the shared pool; SDK retries off."""

    def __init__(self, pool: HttpPool) -> None:
        self.pool = pool
        self._cache: dict[tuple[str, Endpoint], Any] = {}

    def get(self, protocol: str, endpoint: Endpoint, build: Callable[[httpx2.AsyncClient], T]) -> T:
        key = (protocol, endpoint)
        found = self._cache.get(key)
        if found is None or found.is_closed():
            if len(self._cache) > 256:
                self._cache.clear()
            found = build(self.pool.client(endpoint.base_url, endpoint.network))
            self._cache[key] = found
        return found


def sdk_timeout(timeouts: Timeouts) -> httpx2.Timeout:
    import httpx2

    # Reads are bounded by our own first-token and idle clocks, not by the transport.
    return httpx2.Timeout(connect=timeouts.connect, read=None, write=30.0, pool=timeouts.connect)


def from_sdk_exception(exc: BaseException, secrets: tuple[str, ...], *, mid_stream: bool = False,
                       origin: Origin | None = None) -> ProviderError:
    """Either SDK's exception as a classified ``ProviderError`` (duck-typed: no SDK import).

    ``mid_stream``: the provider had already answered 200, so a broken connection is a stream
    cut short, not a provider that could not be reached. ``origin``: who answered (its own
    meanings of codes apply).
    """
    if isinstance(exc, ProviderError):
        return exc
    name = type(exc).__name__
    names = {c.__name__ for c in type(exc).__mro__}
    response = getattr(exc, "response", None)
    if "APITimeoutError" in names or isinstance(exc, TimeoutError):
        return ProviderError(ProblemKind.TIMEOUT, "the request timed out (timeouts.connectSeconds)")
    transport = type(exc).__module__.startswith("httpx2")
    if transport or "APIConnectionError" in names:
        # The anthropic SDK lets some transport errors (a connection cut mid-body) through raw;
        # the openai SDK wraps them in APIConnectionError.
        cause = exc if transport else (exc.__cause__ or exc.__context__)
        cause_name = type(cause).__name__ if cause is not None else name
        if (cert := _certificate_failure(exc)) is not None:
            return CertificateError(
                ProblemKind.NETWORK,
                f"TLS certificate verification failed ({cert}): the server's certificate is not trusted, so "
                f"nothing was sent. If your organisation's proxy or a private CA signs it, set "
                f"`phasewise.network.caBundle` in your user settings to that CA's PEM file (or SSL_CERT_FILE); "
                f"otherwise the connection may be intercepted",
            )
        if "TimeoutException" in {c.__name__ for c in type(cause).__mro__}:
            return ProviderError(ProblemKind.TIMEOUT, f"the connection timed out ({cause_name})")
        if mid_stream:
            return ProviderError(ProblemKind.NETWORK, f"the connection broke mid-answer ({cause_name})")
        return ProviderError(ProblemKind.NETWORK, f"could not reach the provider ({cause_name})")
    if "APIResponseValidationError" in names:
        return ProviderError(ProblemKind.SERVER_ERROR, "the answer did not match the protocol")
    if "APIStatusError" in names and response is not None:
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        if body is None:
            body = _response_text(response)
        # A status error carrying 200 is anthropic's ``event: error`` inside a stream.
        return classify(status if status != 200 else None, body, dict(response.headers), origin=origin,
                        request_id=getattr(exc, "request_id", None), secrets=secrets)
    if "APIError" in names:
        # openai's error chunk inside a 200 stream (OpenRouter, gateways): the body is the error.
        body = getattr(exc, "body", None)
        return classify(None, body if body is not None else str(exc), {}, origin=origin, secrets=secrets)
    if isinstance(exc, ValueError):
        # json.JSONDecodeError and friends while reading a stream: not the protocol at all.
        return ProviderError(
            ProblemKind.SERVER_ERROR, "the answer was not the provider's protocol (a proxy page?)"
        )
    return ProviderError(ProblemKind.SERVER_ERROR, redact(f"{name}: {exc}", secrets)[:300])


class StaleConnection(ProviderError):
    """A pooled connection was found closed before the provider answered anything."""


async def fresh_on_stale(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, sent once more if a stale pooled connection failed it before any answer.

    Not a retry of anything the provider said (it said nothing, and nothing streamed): the new
    attempt opens a new connection, as browsers and Go's net/http do. The router's one retry
    layer sees only the outcome; a second stale failure reaches it as ``network``.
    """
    try:
        return await call()
    except StaleConnection:
        return await call()


def call_failed(exc: BaseException, secrets: tuple[str, ...], *, streamed: str, mid_stream: bool,
                origin: Origin | None = None) -> ProviderError:
    """Whatever ended a call, as the ``ProviderError`` the router sees, with what streamed.

    ``streamed`` is the visible text already handed to the caller: with any, the failure is
    marked ``after_output`` (the router then neither retries nor falls back).
    """
    if not mid_stream and reused_connection_failed(exc):
        return StaleConnection(ProblemKind.NETWORK, "a pooled connection was closed by the server")
    err = from_sdk_exception(exc, secrets, mid_stream=mid_stream, origin=origin)
    err.partial_text = err.partial_text or streamed or None
    err.after_output = bool(err.partial_text)
    return err


def _certificate_failure(exc: BaseException) -> str | None:
    """The verification error's reason when ``exc`` (or what caused it) is a failed TLS
    certificate check, else None."""
    import ssl

    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain and len(chain) < 8:
        chain.append(node)
        node = node.__cause__ or node.__context__
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return str(getattr(link, "verify_message", None) or "certificate verify failed")
    if any("CERTIFICATE_VERIFY_FAILED" in str(link) for link in chain):
        return "certificate verify failed"
    return None


def _response_text(response: Any) -> str | None:
    try:
        return str(response.text)[:2000]
    except Exception:  # a streamed body not yet read
        return None


def guard_content_type(headers: Mapping[str, str], status: int = 200) -> None:
    """A 200 whose body is an HTML page (a proxy's login or error page) is a failure."""
    ctype = headers.get("content-type", "")
    if "text/html" in ctype:
        raise ProviderError(
            ProblemKind.SERVER_ERROR,
            f"HTTP {status}: the answer was an HTML page, not the provider's API (a proxy or a wrong baseUrl?)",
        )


async def check_stream_response(response: Any, secrets: tuple[str, ...], origin: Origin | None = None) -> None:
    """Before reading a 200 stream: fail if it is not one.

    An HTML page is a proxy's; a JSON body where events were asked for is an error some
    providers (MiniMax, gateways) send with status 200, or garbage. Either is read and
    classified here, so it never passes for an empty or truncated answer.
    """
    headers = {k.lower(): v for k, v in dict(response.headers).items()}
    guard_content_type(headers, response.status_code)
    ctype = headers.get("content-type", "")
    if "event-stream" in ctype or "json" not in ctype:
        return
    raw = (await response.aread())[:20_000].decode("utf-8", "replace")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and ("error" in body or minimax_status(body) is not None):
        raise classify(None, body, headers, origin=origin, secrets=secrets)
    if is_html(raw):
        guard_content_type({"content-type": "text/html"}, response.status_code)
    raise ProviderError(
        ProblemKind.SERVER_ERROR,
        f"a stream was asked for but the answer was {ctype.split(';')[0]}, not server-sent events "
        "(not the provider's protocol: a proxy, or a server that does not stream?)",
    )


class StreamClock:
    """Times a call: the first token must come within ``first_token`` seconds of the request
    (waiting for the headers included), each next item within ``idle`` seconds of the last.
    A stall becomes a ``timeout``, never a hang."""

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self.started = time.perf_counter()
        self.first_token_ms: float | None = None

    def mark_first(self) -> None:
        if self.first_token_ms is None:
            self.first_token_ms = (time.perf_counter() - self.started) * 1000

    def _budget(self) -> tuple[float, str]:
        if self.first_token_ms is None:
            left = self.timeouts.first_token - (time.perf_counter() - self.started)
            return max(0.0, left), "firstTokenSeconds"
        return self.timeouts.idle, "idleSeconds"

    async def within_first(self, awaitable: Any) -> Any:
        """``awaitable`` (the request, its headers) within what is left of the first-token time."""
        limit, _ = self._budget()
        try:
            async with asyncio.timeout(limit):
                return await awaitable
        except TimeoutError:
            raise ProviderError(
                ProblemKind.TIMEOUT,
                f"no answer within {self.timeouts.first_token:g} s (timeouts.firstTokenSeconds)",
            ) from None

    async def items(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        it = source.__aiter__()
        while True:
            limit, which = self._budget()
            try:
                async with asyncio.timeout(limit):
                    item = await it.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                detail = (
                    f"the stream stalled: nothing for {limit:g} s (timeouts.idleSeconds)"
                    if which == "idleSeconds"
                    else f"no first token within {self.timeouts.first_token:g} s (timeouts.firstTokenSeconds)"
                )
                raise ProviderError(ProblemKind.TIMEOUT, detail) from None
            yield item

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000
