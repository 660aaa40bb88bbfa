"""What every protocol adapter shares: the request and answer types, the connection pool, the
mapping of SDK exceptions to problem kinds, and the streaming clock (first-token / idle timeouts).

Adapters know nothing of phases: they take a ``ChatRequest`` and give a ``Completion`` or raise
a classified ``ProviderError``. SDKs and httpx2 are imported lazily (inside functions), so the
language server answers ``initialize`` before paying for them.
May not import: edge, phases, router.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from phasewise.phases.prompts import ToolSpec
from phasewise.problems import ProblemKind, ProviderError, redact
from phasewise.providers.classify import classify

if TYPE_CHECKING:
    import httpx2

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    first_token: float = 120.0
    idle: float = 60.0


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One model call, protocol neutral."""

    model: str
    system: str
    user: str
    max_tokens: int
    tool: ToolSpec | None = None
    temperature: float | None = None
    stream: bool = True


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class Completion:
    """What a model answered, and what the call revealed about the provider's limits."""

    text: str = ""
    tool_input: dict[str, Any] | None = None
    tool_input_raw: str | None = None
    usage: Usage = field(default_factory=Usage)
    first_token_ms: float | None = None
    total_ms: float = 0.0
    request_id: str | None = None
    stop_reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class TextSink(Protocol):
    def __call__(self, delta: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to call: one provider's base URL and one key."""

    provider: str
    base_url: str
    key: str | None
    auth_token: bool = False
    headers: tuple[tuple[str, str], ...] = ()


class Adapter(Protocol):
    async def complete(
        self, endpoint: Endpoint, request: ChatRequest, on_text: TextSink, timeouts: Timeouts
    ) -> Completion: ...

    async def list_models(self, endpoint: Endpoint, timeouts: Timeouts) -> list[str]: ...


class HttpPool:
    """One pooled ``httpx2.AsyncClient`` per provider origin, reused by every request and phase."""

    def __init__(self) -> None:
        self._clients: dict[str, httpx2.AsyncClient] = {}

    @staticmethod
    def origin(base_url: str) -> str:
        scheme, _, rest = base_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    def client(self, base_url: str) -> httpx2.AsyncClient:
        key = self.origin(base_url)
        found = self._clients.get(key)
        if found is None or found.is_closed:
            import httpx2

            found = httpx2.AsyncClient(
                limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50),
                timeout=httpx2.Timeout(connect=10.0, read=None, write=30.0, pool=30.0),
                follow_redirects=True,
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
        if found is None or found._client.is_closed:
            if len(self._cache) > 256:
                self._cache.clear()
            found = build(self.pool.client(endpoint.base_url))
            self._cache[key] = found
        return found


def sdk_timeout(timeouts: Timeouts) -> httpx2.Timeout:
    import httpx2

    # Reads are bounded by our own first-token and idle clocks, not by the transport.
    return httpx2.Timeout(connect=timeouts.connect, read=None, write=30.0, pool=timeouts.connect)


def from_sdk_exception(exc: BaseException, secrets: tuple[str, ...]) -> ProviderError:
    """Either SDK's exception as a classified ``ProviderError`` (duck-typed: no SDK import)."""
    if isinstance(exc, ProviderError):
        return exc
    name = type(exc).__name__
    names = {c.__name__ for c in type(exc).__mro__}
    response = getattr(exc, "response", None)
    if "APITimeoutError" in names or isinstance(exc, TimeoutError):
        return ProviderError(ProblemKind.TIMEOUT, "the request timed out")
    if type(exc).__module__.startswith("httpx2"):
        # The anthropic SDK lets some transport errors (a connection cut mid-body) through raw.
        if "TimeoutException" in names:
            return ProviderError(ProblemKind.TIMEOUT, f"the connection timed out ({name})")
        return ProviderError(ProblemKind.NETWORK, f"the connection failed mid-answer ({name})")
    if "APIConnectionError" in names:
        cause = exc.__cause__ or exc.__context__
        detail = f"could not reach the provider ({type(cause).__name__ if cause else name})"
        return ProviderError(ProblemKind.NETWORK, detail)
    if "APIResponseValidationError" in names:
        return ProviderError(ProblemKind.SERVER_ERROR, "the answer did not match the protocol")
    if "APIStatusError" in names and response is not None:
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        if body is None:
            body = _response_text(response)
        err = classify(status if status != 200 else None, body, dict(response.headers),
                       request_id=getattr(exc, "request_id", None), secrets=secrets)
        if status == 200:
            err.after_output = True
        return err
    if "APIError" in names:
        body = getattr(exc, "body", None)
        err = classify(None, body if body is not None else str(exc), {}, secrets=secrets)
        err.after_output = True
        return err
    if isinstance(exc, ValueError):
        # json.JSONDecodeError and friends while reading a stream: not the protocol at all.
        return ProviderError(
            ProblemKind.SERVER_ERROR, "the answer was not the provider's protocol (a proxy page?)"
        )
    return ProviderError(ProblemKind.SERVER_ERROR, redact(f"{name}: {exc}"[:300], secrets))


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
            f"HTTP {status}: the answer was an HTML page, not the provider's API (a proxy?)",
        )


class StreamClock:
    """Times a stream: the first item must come within ``first_token`` seconds of the start,
    each next one within ``idle`` seconds of the last. A stall becomes a ``timeout``."""

    def __init__(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self.started = time.perf_counter()
        self.first_token_ms: float | None = None

    def mark_first(self) -> None:
        if self.first_token_ms is None:
            self.first_token_ms = (time.perf_counter() - self.started) * 1000

    async def within_first(self, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeouts.first_token):
                return await awaitable
        except TimeoutError:
            raise ProviderError(
                ProblemKind.TIMEOUT,
                f"no answer within {self.timeouts.first_token:g} s (timeouts.firstTokenSeconds)",
            ) from None

    async def items(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        it = source.__aiter__()
        first = True
        while True:
            limit = self.timeouts.first_token if self.first_token_ms is None else self.timeouts.idle
            try:
                async with asyncio.timeout(limit):
                    item = await it.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                which = "firstTokenSeconds" if first else "idleSeconds"
                raise ProviderError(
                    ProblemKind.TIMEOUT,
                    f"the stream stalled: nothing for {limit:g} s (timeouts.{which})",
                ) from None
            first = False
            yield item

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000
