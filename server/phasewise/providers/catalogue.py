"""Built-in providers and what is known of their common models.

Facts come from ``shared/reference/providers.md``; prices are list prices in USD per million
tokens as published in late 2026 and only feed cost estimates (settings override any field).
A model missing here has unknown capabilities: preflight then lets the provider decide.
The ``sim-*`` providers are the built-in offline simulator (``phasewise sim``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from typing import Final, Literal

Protocol = Literal["openai", "anthropic"]
SIM_URL_ENV: Final = "PHASEWISE_SIM_URL"
SIM_DEFAULT_URL: Final = "http://127.0.0.1:8765"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Capabilities and prices of one model; ``None`` means unknown."""

    tool_calling: bool | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    vision: bool | None = None
    input_price_per_mtok: float | None = None
    output_price_per_mtok: float | None = None
    # Prompt caching: the price of an input token read from the provider's cache and of one
    # written to it (unknown: the input price), and the shortest prefix an explicit cache mark
    # (Anthropic's ``cache_control``) caches, in tokens (unknown: 1,024).
    cache_read_price_per_mtok: float | None = None
    cache_write_price_per_mtok: float | None = None
    cache_min_tokens: int | None = None
    edit_format: str | None = None  # the edit format the model does best; None: search-replace

    def merged(self, override: ModelInfo) -> ModelInfo:
        """This info with every field ``override`` knows replaced."""
        known = {k: getattr(override, k) for k in self.__slots__ if getattr(override, k) is not None}
        return replace(self, **known)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider as the router needs it."""

    id: str
    protocol: Protocol
    base_url: str
    key_envs: tuple[str, ...] = ()
    auth_token_env: str | None = None
    requires_key: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    models: dict[str, ModelInfo] = field(default_factory=dict)
    label: str = ""
    simulated: bool = False
    # Whether the provider takes OpenAI's ``prompt_cache_key`` (routes repeated prefixes to one
    # cache); only OpenAI documents it, others may refuse an unknown parameter.
    prompt_cache_key: bool = False
    # Whether the provider takes a request that declares tools but requires none (OpenAI
    # ``tool_choice: "none"``, Anthropic ``{"type": "none"}``); GLM's API accepts only "auto".
    tool_choice_none: bool = True
    # Whether the provider honours a ``tool_choice`` that names one tool. llama.cpp does not: its
    # OpenAI endpoint reads an object ``tool_choice`` as "auto", its Anthropic one as "any tool".
    # Where it is False, a phase that would answer by a named tool call answers in a fenced JSON
    # block instead (``phases.formats``: the ``text`` edit format).
    tool_choice_named: bool = True
    # Whose error codes the provider speaks (``classify`` reads provider-specific meanings by
    # family): ``"qwen"`` for DashScope, ``"ollama"`` for Ollama local or cloud; "" unknown.
    family: str = ""
    # Where the account is topped up: named in a billing problem's message. "" unknown.
    billing_url: str = ""

    @property
    def name(self) -> str:
        return self.label or self.id


def _m(tools: bool, window: int, out: int | None, price_in: float | None, price_out: float | None,
       vision: bool | None = None, *, read: float | None = None, write: float | None = None,
       min_cache: int | None = None, edit: str | None = None) -> ModelInfo:
    return ModelInfo(tools, window, out, vision, price_in, price_out, read, write, min_cache, edit)


def _claude(window: int, out: int, price_in: float, price_out: float, min_cache: int) -> ModelInfo:
    # Anthropic: a cache read costs 0.1x the input price, a 5-minute cache write 1.25x.
    return _m(True, window, out, price_in, price_out, True, read=round(price_in * 0.1, 6),
              write=round(price_in * 1.25, 6), min_cache=min_cache)


# Minimum cacheable prompt: 1,024 tokens for Sonnet 4/4.5 and Opus 4.1, 4,096 for Opus 4.5 and
# Haiku 4.5 (Anthropic's prompt-caching page; the newer figures are less certain).
_CLAUDE = {
    "claude-opus-4-5": _claude(200_000, 64_000, 5.0, 25.0, 4096),
    "claude-sonnet-4-5": _claude(200_000, 64_000, 3.0, 15.0, 1024),
    "claude-haiku-4-5": _claude(200_000, 64_000, 1.0, 5.0, 4096),
    "claude-opus-4-1": _claude(200_000, 32_000, 15.0, 75.0, 1024),
    "claude-sonnet-4-0": _claude(200_000, 64_000, 3.0, 15.0, 1024),
}
_GPT = {
    "gpt-5": _m(True, 400_000, 128_000, 1.25, 10.0, True, read=0.125),
    "gpt-5-mini": _m(True, 400_000, 128_000, 0.25, 2.0, True, read=0.025),
    "gpt-5-nano": _m(True, 400_000, 128_000, 0.05, 0.40, True, read=0.005),
    "gpt-4.1": _m(True, 1_047_576, 32_768, 2.0, 8.0, True, read=0.5),
    "gpt-4.1-mini": _m(True, 1_047_576, 32_768, 0.40, 1.60, True, read=0.1),
    "gpt-4o": _m(True, 128_000, 16_384, 2.5, 10.0, True, read=1.25),
    "gpt-4o-mini": _m(True, 128_000, 16_384, 0.15, 0.60, True, read=0.075),
    "o3": _m(True, 200_000, 100_000, 2.0, 8.0, True, read=0.5),
    "o4-mini": _m(True, 200_000, 100_000, 1.10, 4.40, True, read=0.275),
}
_GLM = {
    "glm-4.7": _m(True, 200_000, 128_000, 0.60, 2.20, read=0.11),
    "glm-4.6": _m(True, 200_000, 128_000, 0.60, 2.20, read=0.11),
    "glm-4.5": _m(True, 128_000, 96_000, 0.60, 2.20, read=0.11),
    "glm-4.5-air": _m(True, 128_000, 96_000, 0.20, 1.10, read=0.03),
    "glm-4.5-flash": _m(True, 128_000, 96_000, 0.0, 0.0, read=0.0),
}
_DEEPSEEK = {
    "deepseek-chat": _m(True, 128_000, 8_000, 0.28, 0.42, read=0.028),
    "deepseek-reasoner": _m(True, 128_000, 64_000, 0.28, 0.42, read=0.028),
}
_QWEN = {
    "qwen3-coder-plus": _m(True, 1_000_000, 65_536, 1.0, 5.0, read=0.2),
    "qwen3-max": _m(True, 262_144, 65_536, 1.2, 6.0, read=0.24),
    "qwen-plus": _m(True, 131_072, 16_384, 0.40, 1.20, read=0.08, edit="whole"),
    "qwen-turbo": _m(True, 1_000_000, 16_384, 0.05, 0.20, read=0.01, edit="whole"),
}
_MINIMAX = {
    "MiniMax-M2": _m(True, 204_800, 128_000, 0.30, 1.20, read=0.03, write=0.375),
    "MiniMax-M1": _m(True, 1_000_000, 80_000, 0.40, 2.20),
}
_KIMI = {
    "kimi-k2-0905-preview": _m(True, 262_144, 16_384, 0.60, 2.50, read=0.15),
    "kimi-k2-turbo-preview": _m(True, 262_144, 16_384, 1.15, 8.0, read=0.15),
    "kimi-k2-thinking": _m(True, 262_144, 16_384, 0.60, 2.50, read=0.15),
    "moonshot-v1-128k": _m(True, 131_072, 8_192, 2.0, 5.0),
}
_OPENROUTER = {
    "anthropic/claude-sonnet-4.5": _m(True, 200_000, 64_000, 3.0, 15.0, True, read=0.3, write=3.75),
    "anthropic/claude-opus-4.5": _m(True, 200_000, 64_000, 5.0, 25.0, True, read=0.5, write=6.25),
    "openai/gpt-5": _m(True, 400_000, 128_000, 1.25, 10.0, True, read=0.125),
    "openai/gpt-5-mini": _m(True, 400_000, 128_000, 0.25, 2.0, True, read=0.025),
    "z-ai/glm-4.6": _m(True, 200_000, 128_000, 0.60, 2.20, read=0.11),
    "deepseek/deepseek-chat": _m(True, 128_000, 8_000, 0.28, 0.42),
    "moonshotai/kimi-k2": _m(True, 131_072, 16_384, 0.60, 2.50),
}
_SIM = {
    "claude-sim": _m(True, 200_000, 8_192, 3.0, 15.0, read=0.3, write=3.75, min_cache=1024),
    "glm-sim": _m(True, 128_000, 8_192, 0.60, 2.20, read=0.11),
    "gpt-sim": _m(True, 128_000, 8_192, 0.25, 2.0, read=0.025),
    "tiny-sim": _m(False, 4_096, 1_024, 0.0, 0.0, edit="whole"),
}


def _spec(id: str, protocol: Protocol, base_url: str, key: str | None, models: dict[str, ModelInfo],
          label: str, *, token: str | None = None, requires_key: bool = True) -> ProviderSpec:
    family = id.split("-")[0]
    return ProviderSpec(
        id, protocol, base_url, (key,) if key else (), token, requires_key, (), models, label,
        family="zai" if family == "zhipu" else family, billing_url=BILLING_URLS.get(family, ""),
    )


# Billing pages, by family, as the providers' own error messages and consoles name them.
BILLING_URLS: Final[dict[str, str]] = {
    "anthropic": "https://console.anthropic.com/settings/billing",
    "openai": "https://platform.openai.com/settings/organization/billing/overview",
    "deepseek": "https://platform.deepseek.com/top_up",
    "openrouter": "https://openrouter.ai/settings/credits",
    "ollama": "https://ollama.com/upgrade",
}

# Hosts of the catalogue providers' documented endpoints (regions, coding plans) → family, so a
# provider of your own pointed at one reads that provider's errors the same way.
FAMILY_HOSTS: Final[dict[str, str]] = {
    "api.anthropic.com": "anthropic", "api.openai.com": "openai",
    "api.z.ai": "zai", "open.bigmodel.cn": "zai", "api.deepseek.com": "deepseek",
    "dashscope.aliyuncs.com": "qwen", "dashscope-intl.aliyuncs.com": "qwen", "dashscope-us.aliyuncs.com": "qwen",
    "api.minimax.io": "minimax", "api.minimaxi.com": "minimax",
    "api.moonshot.ai": "moonshot", "api.moonshot.cn": "moonshot", "api.kimi.com": "moonshot",
    "openrouter.ai": "openrouter", "ollama.com": "ollama",
}


def family_of(spec: ProviderSpec) -> str:
    """The error family ``spec`` speaks: the catalogue's, else its base URL's host's, else ""."""
    return spec.family or FAMILY_HOSTS.get(host_of(spec.base_url), "")


def billing_url_of(spec: ProviderSpec) -> str:
    """Where ``spec``'s account is topped up, when known."""
    return spec.billing_url or BILLING_URLS.get(family_of(spec), "")


BUILTIN: Final[dict[str, ProviderSpec]] = {
    s.id: s
    for s in (
        _spec("anthropic", "anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", _CLAUDE,
              "Anthropic", token="ANTHROPIC_AUTH_TOKEN"),
        replace(_spec("openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", _GPT, "OpenAI"),
                prompt_cache_key=True),
        replace(_spec("zai", "openai", "https://api.z.ai/api/paas/v4", "ZAI_API_KEY", _GLM, "Z.AI"),
                tool_choice_none=False),
        replace(_spec("zai-anthropic", "anthropic", "https://api.z.ai/api/anthropic", "ZAI_API_KEY", _GLM,
                      "Z.AI (Anthropic protocol)"), tool_choice_none=False),
        replace(_spec("zhipu", "openai", "https://open.bigmodel.cn/api/paas/v4", "ZHIPUAI_API_KEY", _GLM,
                      "Zhipu"), tool_choice_none=False),
        _spec("deepseek", "openai", "https://api.deepseek.com", "DEEPSEEK_API_KEY", _DEEPSEEK,
              "DeepSeek"),
        _spec("deepseek-anthropic", "anthropic", "https://api.deepseek.com/anthropic",
              "DEEPSEEK_API_KEY", _DEEPSEEK, "DeepSeek (Anthropic protocol)"),
        _spec("qwen", "openai", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
              "DASHSCOPE_API_KEY", _QWEN, "Qwen (DashScope)"),
        _spec("minimax", "openai", "https://api.minimax.io/v1", "MINIMAX_API_KEY", _MINIMAX,
              "MiniMax"),
        _spec("minimax-anthropic", "anthropic", "https://api.minimax.io/anthropic",
              "MINIMAX_API_KEY", _MINIMAX, "MiniMax (Anthropic protocol)"),
        _spec("moonshot", "openai", "https://api.moonshot.ai/v1", "MOONSHOT_API_KEY", _KIMI,
              "Moonshot (Kimi)"),
        _spec("openrouter", "openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY",
              _OPENROUTER, "OpenRouter"),
        _spec("ollama", "openai", "http://localhost:11434/v1", None, {}, "Ollama",
              requires_key=False),
        _spec("lmstudio", "openai", "http://localhost:1234/v1", None, {}, "LM Studio",
              requires_key=False),
        # llama.cpp's llama-server serves both protocols on one port: OpenAI under /v1, Anthropic's
        # Messages at /v1/messages (the SDK adds /v1). A key only when started with --api-key.
        replace(_spec("llamacpp", "openai", "http://127.0.0.1:8080/v1", "LLAMACPP_API_KEY", {},
                      "llama.cpp", requires_key=False), tool_choice_named=False),
        # Its Messages endpoint drops {"type": "none"} (so "none" is "auto") and reads a named tool as "any".
        replace(_spec("llamacpp-anthropic", "anthropic", "http://127.0.0.1:8080", "LLAMACPP_API_KEY", {},
                      "llama.cpp (Anthropic protocol)", requires_key=False),
                tool_choice_named=False, tool_choice_none=False),
        _spec("vllm", "openai", "http://localhost:8000/v1", "VLLM_API_KEY", {}, "vLLM",
              requires_key=False),
        _spec("litellm", "openai", "http://localhost:4000", "LITELLM_API_KEY", {},
              "LiteLLM proxy"),
    )
}

# Simulated providers: one per protocol family, so the demo shows every phase on its own route.
SIMULATED: Final[dict[str, tuple[Protocol, dict[str, ModelInfo], str]]] = {
    "sim-claude": ("anthropic", _SIM, "Simulated Claude (Anthropic protocol)"),
    "sim-glm": ("openai", _SIM, "Simulated GLM (OpenAI protocol)"),
    "sim-gpt": ("openai", _SIM, "Simulated GPT (OpenAI protocol)"),
}

# The simulated provider that stands for OpenAI itself takes ``prompt_cache_key``.
SIM_CACHE_KEY: Final = frozenset({"sim-gpt"})

# Other documented endpoints of the same providers (regions): their keys may go there too.
REGIONAL_BASE_URLS: Final[dict[str, tuple[str, ...]]] = {
    "qwen": ("https://dashscope.aliyuncs.com/compatible-mode/v1",),
    "minimax": ("https://api.minimaxi.com/v1",),
    "minimax-anthropic": ("https://api.minimaxi.com/anthropic",),
    "moonshot": ("https://api.moonshot.cn/v1",),
    "llamacpp": ("http://localhost:8080/v1",),
    "llamacpp-anthropic": ("http://localhost:8080",),
}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased, the scheme's default port left out."""
    scheme, _, rest = url.strip().partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2].lower()
    scheme = scheme.lower()
    default = {"https": ":443", "http": ":80"}.get(scheme, "")
    return f"{scheme}://{host.removesuffix(default) if default else host}"


def host_of(url: str) -> str:
    """The host name (or IP, without brackets) of a URL or origin, lower-cased, without port."""
    host = origin_of(url).partition("://")[2]
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback(origin: str) -> bool:
    """Whether an origin (``origin_of``'s form) is this machine: ``localhost`` or a loopback IP."""
    host = host_of(origin)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_origins() -> dict[str, frozenset[str]]:
    """Key variable → the origins the catalogue sends it to. A key named here is *bound*: settings
    may send it elsewhere only to an origin the user allowed (``security.allowedKeyOrigins``)."""
    bound: dict[str, set[str]] = {}
    for spec in BUILTIN.values():
        urls = (spec.base_url, *REGIONAL_BASE_URLS.get(spec.id, ()))
        for env in (*spec.key_envs, *((spec.auth_token_env,) if spec.auth_token_env else ())):
            bound.setdefault(env, set()).update(origin_of(u) for u in urls)
    return {env: frozenset(origins) for env, origins in bound.items()}


KEY_ORIGINS: Final[dict[str, frozenset[str]]] = key_origins()

DEFAULT_PROVIDER: Final = "anthropic"
DEFAULT_MODEL: Final = "claude-sonnet-4-5"


def sim_base_url(name: str, protocol: Protocol, root: str | None = None) -> str:
    """Where the simulator serves provider ``name`` (its SDK base URL)."""
    root = (root or os.environ.get(SIM_URL_ENV) or SIM_DEFAULT_URL).rstrip("/")
    return f"{root}/{name}/v1" if protocol == "openai" else f"{root}/{name}"


def builtin(provider_id: str) -> ProviderSpec | None:
    """The catalogue entry for ``provider_id``, simulated providers included."""
    if provider_id in BUILTIN:
        return BUILTIN[provider_id]
    if provider_id in SIMULATED:
        protocol, models, label = SIMULATED[provider_id]
        return ProviderSpec(
            provider_id, protocol, sim_base_url(provider_id, protocol), (), None, False, (),
            models, label, simulated=True, prompt_cache_key=provider_id in SIM_CACHE_KEY,
        )
    return None


def known_ids() -> list[str]:
    return [*BUILTIN, *SIMULATED]


def providers_of_env(env: str) -> list[str]:
    """Catalogue providers whose key is held in ``env``."""
    return [s.id for s in BUILTIN.values() if env in s.key_envs or env == s.auth_token_env]
