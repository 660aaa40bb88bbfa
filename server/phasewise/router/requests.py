"""What a phase sends on a route: the ``ChatRequest`` laid out for the provider's prompt cache
(``phase_request``), its output budget, and the size of what it would cache.

May import ``providers``, ``tokens`` and the routes. ``router.router`` re-exports ``phase_request``
and ``output_budget``, where the phases import them from.
"""

from __future__ import annotations

import json

from phasewise.providers.base import ChatRequest, ToolLike
from phasewise.providers.turns import Turn, transcript_chars
from phasewise.router.routes import Route
from phasewise.tokens import estimate_tokens


def output_budget(route: Route) -> int:
    cap = route.info.max_output_tokens or 8192
    return route.max_output_tokens or min(cap, 16_384)


DEFAULT_CACHE_MIN_TOKENS = 1024  # Anthropic's minimum cacheable prompt for Sonnet-class models


def prefix_tokens(system: str, context: str, tools: tuple[ToolLike, ...]) -> int:
    """About how many tokens the cacheable prefix (tools, system text, documents) holds."""
    tool_chars = sum(len(t.name) + len(t.description) + len(json.dumps(t.schema)) for t in tools)
    return estimate_tokens(len(system) + len(context) + tool_chars)


def phase_request(route: Route, *, system: str, user: str, tool: ToolLike | None, stream: bool = True,
                  context: str = "", tools: tuple[ToolLike, ...] = (), caching: bool = False,
                  cache_key: str | None = None, turns: tuple[Turn, ...] = (),
                  may_call_tools: bool = False) -> ChatRequest:
    """The ``ChatRequest`` a phase sends on ``route``: ``tool`` is the tool the model must call (None:
    it answers in text, or with ``may_call_tools`` calls any of ``tools``), ``tools`` those declared,
    ``turns`` a loop's transcript so far. With ``caching``: Anthropic-protocol requests mark the
    prefix (and a loop step's end) with ``cache_control`` when what they would cache reaches the
    model's minimum cacheable size (``ModelInfo.cache_min_tokens``); OpenAI-protocol requests carry
    ``cache_key`` only to providers that take ``prompt_cache_key``; others cache implicitly."""
    required = tool
    declared = tools if tools and (required is None or required in tools) else ()
    mark, key = False, None
    if caching and route.spec.protocol == "anthropic":
        minimum = route.info.cache_min_tokens or DEFAULT_CACHE_MIN_TOKENS
        mark = prefix_tokens(system, context, declared or ((required,) if required else ())) \
            + estimate_tokens(transcript_chars(turns) + (len(user) if may_call_tools else 0)) >= minimum
    elif caching and route.spec.prompt_cache_key:
        key = cache_key
    return ChatRequest(
        model=route.model, system=system, user=user, max_tokens=output_budget(route),
        tool=required, temperature=route.temperature, stream=stream,
        context=context, tools=declared, cache_prefix=mark, cache_key=key, turns=turns, may_call_tools=may_call_tools,
    )


__all__ = ["DEFAULT_CACHE_MIN_TOKENS", "output_budget", "phase_request", "prefix_tokens"]
