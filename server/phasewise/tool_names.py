"""The names of the tools Phasewise declares to a model, on the wire: shared by the phases that
declare them (``phases.prompts``) and the simulator that answers them, which may not import the
code it stands in for (``pyproject.toml``: the simulator's contract).

A leaf: it imports nothing of Phasewise, and every layer may import it.
"""

from __future__ import annotations

from typing import Final

EDIT_TOOL: Final = "apply_edits"  # the code phase's change
FINDINGS_TOOL: Final = "report_findings"  # the review phase's findings

# The tools of a phase that works in steps (``phases.<p>.agent``): users' settings name them.
READ_FILE: Final = "read_file"
LIST_FILES: Final = "list_files"
SEARCH_FILES: Final = "search_files"
EDIT_FILE: Final = "edit_file"
RUN_COMMAND: Final = "run_command"  # a named command from settings (``phases.<p>.agent.commands``)
AGENT_TOOLS: Final = (READ_FILE, LIST_FILES, SEARCH_FILES, EDIT_FILE)
READ_ONLY_TOOLS: Final = (READ_FILE, LIST_FILES, SEARCH_FILES)

__all__ = ["AGENT_TOOLS", "EDIT_FILE", "EDIT_TOOL", "FINDINGS_TOOL", "LIST_FILES", "READ_FILE", "READ_ONLY_TOOLS",
           "RUN_COMMAND", "SEARCH_FILES"]
