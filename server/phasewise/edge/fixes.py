"""Quick fixes (code actions) offered on a problem diagnostic: the ways out of each kind.

Every problem diagnostic gets: retry now (for a rate-limit, the title says when the limit lifts),
retry on each configured fallback, and open the phase's settings. Missing or rejected keys also
get "set the key" (the editor's ``phasewise.setApiKey`` command, naming the env var, never a
value); transient failures without fallbacks get "add a fallback". ``phasewise.setApiKey`` and
``phasewise.openSettings`` are client-side commands (see the README).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lsprotocol import types

_KEY_KINDS = {"missing-credentials", "auth"}
_TRANSIENT = {"rate-limit", "overloaded", "server-error", "network", "timeout"}
_NO_RETRY_NOW = {"config", "document-changed"}


def _when(problem: dict[str, Any]) -> str | None:
    """When a rate-limit lifts, for a title: ``14:03:12, in 12 s`` (or just the seconds)."""
    seconds = problem.get("retryAfterSeconds")
    if not isinstance(seconds, (int, float)):
        return None
    wait = f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
    try:
        at = datetime.fromisoformat(str(problem["retryAt"])).strftime("%H:%M:%S")
    except (KeyError, ValueError):
        return f"in {wait}"
    return f"{at}, in {wait}"


def problem_fixes(uri: str, diag: types.Diagnostic, problem: dict[str, Any]) -> list[types.CodeAction]:
    phase = problem.get("phase") or "plan"
    kind = problem["kind"]
    fixes: list[types.CodeAction] = []

    def action(title: str, command: str, arg: dict[str, Any]) -> None:
        fixes.append(types.CodeAction(
            title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
            is_preferred=not fixes or None,
            command=types.Command(title=title, command=command, arguments=[arg]),
        ))

    if kind in _KEY_KINDS:
        env = problem.get("keyEnv")
        provider = problem.get("provider")
        what = f"Set {env}" if env else f"Set the key for {provider}"
        action(f"{what} (Phasewise: Set API key)", "phasewise.setApiKey", {"env": env, "provider": provider})
    retry = {"uri": uri, "phase": phase}
    when = _when(problem) if kind in {"rate-limit", "overloaded"} else None
    if when is not None:
        action(f"Retry the {phase} phase once the limit lifts ({when})", "phasewise.retry", retry)
    elif kind == "rate-limit":
        action(f"Retry the {phase} phase now (the provider did not say when the limit lifts)",
               "phasewise.retry", retry)
    elif kind == "billing":
        action(f"Retry the {phase} phase now (after topping up the account)", "phasewise.retry", retry)
    elif kind in _NO_RETRY_NOW:
        action(f"Retry the {phase} phase", "phasewise.retry", retry)
    else:
        action(f"Retry the {phase} phase now", "phasewise.retry", retry)
    fallbacks = [fb for fb in problem.get("fallbacks") or () if isinstance(fb, str)]
    for fb in fallbacks:
        action(f"Retry the {phase} phase on {fb}", "phasewise.retry", {**retry, "model": fb})
    if not fallbacks and kind in _TRANSIENT | {"billing"}:
        action(f"Add a fallback model for the {phase} phase", "phasewise.openSettings",
               {"setting": f"phasewise.phases.{phase}.fallbacks"})
    phase_setting = f"phasewise.phases.{phase}"
    action(f"Open the {phase} phase's settings", "phasewise.openSettings", {"setting": phase_setting})
    setting = problem.get("setting")
    if isinstance(setting, str) and setting and setting != phase_setting:
        action(f"Open the setting `{setting}`", "phasewise.openSettings", {"setting": setting})
    return fixes
