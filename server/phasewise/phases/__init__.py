"""The phases (plan, code, review, and phases of the user's own), without LSP: documents and their
workspace context, prompts, the answers' edits and findings, and the service that runs a phase.

May import ``router``, ``settings``, ``keystore``, ``providers``, ``gate``, ``problems``, ``serial``
and ``tool_names``; never ``workflows``, ``edge``, ``cli`` or ``sim``.
"""
