"""Code actions: the quick fixes of Phasewise's own diagnostics.

A review finding with a suggestion offers to apply it; a problem offers the ways out of its kind
(``edge.fixes``).
"""

from __future__ import annotations

from lsprotocol import types

from phasewise.edge.diagnostics import REVIEW_SOURCE, SOURCE
from phasewise.edge.feature import Feature
from phasewise.edge.fixes import problem_fixes


class CodeActionsFeature(Feature):
    def register(self) -> None:
        @self.ls.feature(
            types.TEXT_DOCUMENT_CODE_ACTION,
            types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
        )
        def on_code_action(params: types.CodeActionParams) -> list[types.CodeAction]:
            return self.actions(params)

    def actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        actions: list[types.CodeAction] = []
        for diag in params.context.diagnostics:
            data = diag.data if isinstance(diag.data, dict) else None
            if data is None:
                continue
            if diag.source == REVIEW_SOURCE and isinstance(data.get("suggestion"), str):
                actions.append(types.CodeAction(
                    title=f"Apply review suggestion: {diag.message[:60]}",
                    kind=types.CodeActionKind.QuickFix, diagnostics=[diag], is_preferred=True,
                    edit=types.WorkspaceEdit(changes={uri: [types.TextEdit(range=diag.range,
                                                                           new_text=data["suggestion"])]}),
                ))
            elif diag.source == SOURCE and isinstance(data.get("kind"), str):
                actions.extend(problem_fixes(uri, diag, data))
        return actions
