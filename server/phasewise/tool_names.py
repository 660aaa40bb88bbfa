"""The names of the tools Phasewise declares to a model, on the wire: shared by the phases that
declare them (``phases.prompts``) and the simulator that answers them, which may not import the
code it stands in for (``pyproject.toml``: the simulator's contract).

A leaf: it imports nothing of Phasewise, and every layer may import it.
"""

from __future__ import annotations

from typing import Final

EDIT_TOOL: Final = "apply_edits"  # the code phase's change
FINDINGS_TOOL: Final = "report_findings"  # the review phase's findings

__all__ = ["EDIT_TOOL", "FINDINGS_TOOL"]
