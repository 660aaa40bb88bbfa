"""Quick fixes (code actions) offered on a problem diagnostic: the ways out of each kind."""

from __future__ import annotations

from typing import Any

from lsprotocol import types


def problem_fixes(uri: str, diag: types.Diagnostic, problem: dict[str, Any]) -> list[types.CodeAction]:
    phase = problem.get("phase") or "plan"
    kind = problem["kind"]
    fixes: list[types.CodeAction] = []

    def action(title: str, command: str, arg: dict[str, Any]) -> None:
        fixes.append(types.CodeAction(
            title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
            command=types.Command(title=title, command=command, arguments=[arg]),
        ))

    if kind in {"missing-credentials", "auth"} and problem.get("keyEnv"):
        env = problem["keyEnv"]
        action(f"Set {env} (Phasewise: Set API key)", "phasewise.setApiKey",
               {"env": env, "provider": problem.get("provider")})
    if kind == "rate-limit" and problem.get("retryAfterSeconds") is not None:
        action(f"Retry the {phase} phase (the provider asked to wait {problem['retryAfterSeconds']:.0f} s)",
               "phasewise.retry", {"uri": uri, "phase": phase})
    elif kind not in {"config", "document-changed"}:
        action(f"Retry the {phase} phase now", "phasewise.retry", {"uri": uri, "phase": phase})
    else:
        action(f"Retry the {phase} phase", "phasewise.retry", {"uri": uri, "phase": phase})
    for fb in problem.get("fallbacks") or ():
        action(f"Retry the {phase} phase on {fb}", "phasewise.retry", {"uri": uri, "phase": phase, "model": fb})
    action(f"Open the {phase} phase's settings", "phasewise.openSettings",
           {"setting": problem.get("setting") or f"phasewise.phases.{phase}"})
    return fixes
