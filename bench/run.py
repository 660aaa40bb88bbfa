"""Run the Phasewise benchmarks: ``python bench/run.py`` (full) or ``python bench/run.py --short`` (CI).

Prints a table of every figure beside its baseline measured in the same run, then, as the last
line, one JSON object with every figure by name. Always exits 0: figures are reported, not judged.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.main import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
