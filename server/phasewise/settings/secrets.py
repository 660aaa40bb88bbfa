"""Keys never live in settings: what looks like one, where it belongs instead, and the way out a
message gives for a key (which depends on where the phase runs: the editor or the command line)."""

from __future__ import annotations

import re
from typing import Any

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEY_PREFIX = re.compile(r"^(sk-|sk_|pk-|rk-|key-|xai-|gsk_|hf_|AIza|ghp_|github_pat_|glpat-|eyJ)", re.IGNORECASE)
# Field names that can only mean "the key itself", compared without case, `_` or `-`.
SECRET_FIELDS = frozenset({
    "apikey", "apikeys", "key", "keys", "token", "apitoken", "authtoken", "accesstoken", "bearertoken",
    "secret", "secretkey", "clientsecret", "password", "passwd", "credentials",
})
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "x-auth-token", "cookie",
})


def looks_like_key(value: str, *, shape: bool = True) -> bool:
    """Whether ``value`` is shaped like an API key or token rather than a name (heuristic, errs
    towards "key": a well-known key prefix, or, with ``shape``, long, unbroken and mixing letters
    and digits; header values are checked without ``shape``, since URLs and ids are legitimate)."""
    v = value.strip()
    if KEY_PREFIX.match(v) and len(v) >= 12:
        return True
    if v.lower().startswith(("bearer ", "basic ", "token ")):
        return True
    if shape and len(v) >= 24 and " " not in v and any(c.isdigit() for c in v) and any(c.isalpha() for c in v):
        return not (ENV_NAME.match(v) and v == v.upper())  # UPPER_SNAKE_CASE_123 is a variable name
    return False


def env_names(value: str | list[str] | None, what: str) -> str | list[str] | None:
    names = [value] if isinstance(value, str) else list(value or [])
    for name in names:
        if looks_like_key(name):
            raise ValueError(f"this looks like a key itself, not the name of an environment variable: {KEY_HELP}")
        if not ENV_NAME.match(name):
            raise ValueError(f"expected the name of an environment variable ({what}), e.g. TEAM_GATEWAY_KEY")
    return value


KEY_HELP = "keys never live in settings (they are shared, synced and committed)"

# VS Code's set-the-key action, named as its palette names it (editors/vscode/package.json).
SET_API_KEY_ACTION = "Phasewise: Set API Key…"

# Where a phase runs: the command line (``"cli"``), an editor with no command of its own to set a key
# (``"editor"``: Helix, Vim, a bare Eglot or lsp-mode), or an editor whose Phasewise plugin has one,
# named as its user knows it (``":Phasewise key"``, ``"M-x phasewise-set-api-key"``, VS Code's
# ``SET_API_KEY_ACTION``: what the plugin declares as ``experimental.phasewise.setKeyCommand``).
# Decides the way out a message gives for a key: export, ``phasewise auth``, that command.
Surface = str


def key_way_out(env: str | None, provider: str | None, surface: Surface = "editor") -> str:
    """How to set a missing or wrong key, where the phase runs: the one text every message uses."""
    auth = f"run `phasewise auth set {provider or '<provider>'}` (OS keyring)"
    if surface == "cli":
        return f"export {env or '<KEY_VARIABLE>'}=… in the shell that runs phasewise, or {auth}"
    where = f"set the environment variable {env or 'the provider names'} where the editor starts Phasewise"
    if surface == "editor":
        return f"{where} and restart the language server, or {auth}"
    return f"{where}, {auth}, or use `{surface}` in the editor"


def key_env_hint(provider_id: str, raw: Any = None) -> str:
    """The environment variable a provider's key belongs in: the entry's own ``apiKeyEnv``, else the
    catalogue's, else ``<ID>_API_KEY``."""
    named = raw.get("apiKeyEnv", raw.get("api_key_env")) if isinstance(raw, dict) else None
    if isinstance(named, list) and named:
        named = named[0]
    if isinstance(named, str) and ENV_NAME.match(named) and not looks_like_key(named):
        return named
    from phasewise.providers.catalogue import builtin  # a data module: key variable names only

    spec = builtin(provider_id)
    if spec is not None and (spec.key_envs or spec.auth_token_env):
        return (spec.key_envs or (spec.auth_token_env,))[0] or ""
    return re.sub(r"[^A-Z0-9_]", "_", provider_id.upper()) + "_API_KEY"


def secret_help(provider_id: str | None, env: str | None, surface: Surface = "editor") -> str:
    """Where a key goes instead of settings."""
    if provider_id is None or env is None:
        return (f"{KEY_HELP}: {key_way_out(None, None, surface)} (the variable is named in "
                f"`phasewise.providers.<id>.apiKeyEnv`)")
    return (f"{KEY_HELP}: {key_way_out(env, provider_id, surface)}; settings only name the "
            f"variable, in `phasewise.providers.{provider_id}.apiKeyEnv`")


def normalised(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


URL_SECRET = re.compile(r"[?&](api[_-]?key|key|token|access[_-]?token|auth)=", re.IGNORECASE)
