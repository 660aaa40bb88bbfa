"""Workflows over the phases, shared by the language server and the command line.

- ``runs``: plan → code → review as one run (one run id; the plan to code, the change to review).
- ``ledger``: the run record (one JSON line per phase run) and ``phasewise history``.
- ``compare``: one phase on several models side by side, as a report.
- ``doctor``: live provider checks plus every phase's preflight (``phasewise.verify``).
- ``discovery``: model lists from ``/models``, cached for preflight; completion of model ids.
- ``config``: finding the ``phasewise`` settings section in files, for the command line.

No module here knows LSP: ``edge.features.workflows`` adapts them to the server, ``cli`` to the
terminal. May import ``phases`` and every layer below it; never ``edge``, ``cli`` or ``sim``.
"""

__all__: list[str] = []
