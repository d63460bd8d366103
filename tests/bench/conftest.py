"""The bench/compare modules are scripts run from their own folder (each imports its siblings
by bare name, as ``python bench/compare/run.py`` sees them), so these tests put that folder on
``sys.path`` the same way."""

from __future__ import annotations

import sys
from pathlib import Path

COMPARE = Path(__file__).resolve().parents[2] / "bench" / "compare"
if str(COMPARE) not in sys.path:
    sys.path.insert(0, str(COMPARE))
