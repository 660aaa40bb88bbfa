"""``phasewise auth set|list|clear``: API keys in the OS keyring, never on the command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from phasewise.workflows.config import FoundSettings

from phasewise.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    console_for,
    print_json,
    settings_for,
)

# ----------------------------------------------------------------------------- auth

def _key_env_for(provider: str, explicit: str | None, found: FoundSettings) -> str:
    """The variable PROVIDER's key is stored under: ``--env``, else the catalogue's (a project's
    settings cannot rename a catalogue provider's key), else the provider's ``apiKeyEnv``."""
    import re

    from phasewise.providers.catalogue import builtin

    if explicit:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", explicit):
            raise UsageError(f"--env expects an environment variable name such as {provider.upper()}_API_KEY")
        return explicit
    spec = builtin(provider)
    if spec is not None:
        envs = spec.key_envs or ((spec.auth_token_env,) if spec.auth_token_env else ())
        if not envs:
            raise UsageError(f"{spec.name} ({provider}) needs no key")
        return envs[0]
    ps = found.loaded.settings.providers.get(provider)
    named = ps.api_key_env if ps is not None else None
    if isinstance(named, list):
        named = named[0] if named else None
    if not named:
        raise UsageError(f"unknown provider {provider!r}: use a catalogue id, declare it (with apiKeyEnv) in your "
                         f"settings, or pass --env NAME")
    return named


def _read_key(provider: str, env: str) -> str:
    """The key from a hidden prompt (a terminal) or stdin (a pipe); never echoed."""
    import getpass

    if sys.stdin.isatty():
        try:
            value = getpass.getpass(f"API key for {provider} ({env}, stored in the OS keyring): ")
        except EOFError:
            value = ""
    else:
        value = sys.stdin.read()
    value = value.strip()
    if not value:
        raise UsageError("no key given (type it at the prompt, or pipe it on stdin)")
    if any(c.isspace() for c in value):
        raise UsageError("the key contains whitespace: give one key, on one line")
    return value


def _known_key_envs(found: FoundSettings, stored: list[str]) -> dict[str, list[str]]:
    """Key variable → the providers that use it: the catalogue's, the settings', the stored ones."""
    from phasewise.providers.catalogue import BUILTIN

    out: dict[str, list[str]] = {}
    for spec in BUILTIN.values():
        for env in (*spec.key_envs, *((spec.auth_token_env,) if spec.auth_token_env else ())):
            out.setdefault(env, []).append(spec.id)
    for pid, ps in found.loaded.settings.providers.items():
        envs = [ps.api_key_env] if isinstance(ps.api_key_env, str) else list(ps.api_key_env or [])
        for env in envs:
            if pid not in out.setdefault(env, []):
                out[env].append(pid)
    for env in stored:
        out.setdefault(env, [])
    return out


async def cmd_auth(args: argparse.Namespace) -> int:
    from phasewise.keystore import KeyStoreError, OsKeyring
    from phasewise.router.routes import KeyRef, Keyring
    from phasewise.settings import SET_API_KEY_ACTION

    action = args.auth_command
    if action is None:
        raise UsageError("expected an action: set PROVIDER, list, or clear PROVIDER|all")
    found = settings_for(args, Path.cwd())
    store = OsKeyring()
    info = store.info()
    if action == "set":
        env = _key_env_for(args.provider, args.env, found)
        if not info.available:
            print(f"phasewise auth set: {info.note}.\nSet {env} in the environment instead (e.g. in your shell "
                  f"profile), or use the editor's '{SET_API_KEY_ACTION}' command.", file=sys.stderr)
            return EXIT_FAILED
        value = _read_key(args.provider, env)
        try:
            store.set(env, value)
        except KeyStoreError as err:
            print(f"phasewise auth set: {err}. Set {env} in the environment instead.", file=sys.stderr)
            return EXIT_FAILED
        masked = KeyRef(env, value).masked()
        shadowed = bool(os.environ.get(env))
        if args.json:
            print_json({"ok": True, "provider": args.provider, "env": env, "masked": masked,
                         "backend": info.backend, "shadowedByEnvironment": shadowed})
        else:
            print(f"Stored the key for {args.provider} as {env} ({masked}) in the OS keyring ({info.backend}).")
            if shadowed:
                print(f"Note: {env} is also set in the environment, which comes first.")
        return EXIT_OK
    if action == "list":
        stored = store.names() if info.available else []
        keyring = Keyring(dict(os.environ), store=store)
        rows: list[dict[str, Any]] = []
        for env, providers in sorted(_known_key_envs(found, stored).items()):
            ref = keyring.get(env)
            rows.append({"env": env, "providers": providers, "source": ref.source if ref else None,
                         "masked": ref.masked() if ref else None})
        if args.json:
            print_json({"keyring": info.to_json(), "keys": rows})
            return EXIT_OK
        from rich.table import Table

        console = console_for(args)
        table = Table(title="API keys (first found wins: environment, OS keyring, editor)", title_justify="left")
        for header in ("key variable", "providers", "source", "key"):
            table.add_column(header)
        for row in rows:
            table.add_row(str(row["env"]), ", ".join(row["providers"]) or "–", str(row["source"] or "not set"),
                          str(row["masked"] or "–"))
        console.print(table)
        console.print(f"OS keyring: {info.note}", style="dim" if info.available else "yellow")
        return EXIT_OK
    # clear
    if not info.available:
        print(f"phasewise auth clear: {info.note}; nothing to clear.", file=sys.stderr)
        return EXIT_FAILED
    try:
        if args.provider == "all" and not args.env:
            envs = sorted(set(store.names()) | set(_known_key_envs(found, []).keys()))
        else:
            envs = [_key_env_for(args.provider, args.env, found)]
        removed = [env for env in envs if store.delete(env)]
    except KeyStoreError as err:
        print(f"phasewise auth clear: {err}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json({"ok": True, "removed": removed})
    elif removed:
        print(f"Removed from the OS keyring: {', '.join(removed)}.")
    else:
        print("Nothing stored in the OS keyring for " + ("any provider." if args.provider == "all" else
                                                          f"{args.provider} ({envs[0]})."))
    return EXIT_OK

