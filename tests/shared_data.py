"""Where the shared fixtures and media live (importable as `shared_data`: tests/ is on sys.path).

`../shared` beside the checkout (the CI layout), else $Y2R_SHARED, else /work/shared.
"""

from __future__ import annotations

import os
from pathlib import Path

_beside = Path(__file__).resolve().parents[2] / "shared"
SHARED = _beside if _beside.exists() else Path(os.environ.get("Y2R_SHARED", "/work/shared"))
ROOM_ORBIT_GT = SHARED / "fixtures" / "room_orbit_gt.npz"
