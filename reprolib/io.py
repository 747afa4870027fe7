"""Reading files a user may hand us damaged: one clear ``ReprolibError`` instead of a traceback.

Writers in reprolib are atomic (temp file + rename), so a killed run never leaves half a file;
these readers cover files damaged or replaced by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reprolib import paths
from reprolib.errors import ReprolibError


def load_torch(path, what: str = "checkpoint", **kw):
    """``torch.load(path)``; an unreadable file is a ReprolibError naming it."""
    path = Path(path)
    if not path.exists():
        raise ReprolibError(f"{what} {paths.rel(path)} does not exist")
    try:
        return torch.load(path, **{"map_location": "cpu", **kw})
    except Exception as e:  # noqa: BLE001 - any failure to read is the same user-facing error
        raise ReprolibError(f"{what} {paths.rel(path)} is corrupt or unreadable "
                            f"({type(e).__name__}); delete it (or rerun with force) to "
                            f"recompute it") from None


def load_json(path, what: str = "record"):
    """``json.load(path)``; an unreadable file is a ReprolibError naming it."""
    path = Path(path)
    if not path.exists():
        raise ReprolibError(f"{what} {paths.rel(path)} does not exist")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ReprolibError(f"{what} {paths.rel(path)} is corrupt ({e}); delete it (or rerun "
                            f"with force) to recompute it") from None
