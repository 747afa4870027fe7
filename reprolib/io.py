"""Every file reprolib writes or reads goes through here.

Writing is atomic: the content goes to a uniquely named temporary file in the target's folder
(``.NAME.<pid>.<random>.tmp``) and is renamed over the target, so a killed process never leaves
half a file and two processes writing the same file never collide on the temporary name.
JSON is strict (``NaN`` / ``Infinity`` are written as ``null``), so any JSON parser reads it.

Reading never runs code from a file: training checkpoints load with
``torch.load(..., weights_only=True)`` (tensors, numbers, strings, lists, dicts only) and model
weights are safetensors.  A missing, corrupt or refused file is one ``ReprolibError`` that
names the file and what to do.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Callable

from reprolib import paths
from reprolib.errors import ReprolibError


# --------------------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path``.

    The temporary file sits beside ``path`` (same file system, so the rename is atomic) and
    has a name unique to this process and call; it is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def to_strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` and tuples made lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_strict_json(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return to_strict_json(obj.item())          # numpy / torch scalars
    if hasattr(obj, "to_json") and callable(obj.to_json):
        return to_strict_json(obj.to_json())       # e.g. a searched architecture
    return obj


def dumps(obj: Any) -> str:
    """Strict, stable JSON text (sorted keys, one space indent, trailing newline)."""
    return json.dumps(to_strict_json(obj), indent=1, sort_keys=True, allow_nan=False,
                      default=str) + "\n"


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as strict JSON to ``path``, atomically."""
    text = dumps(obj)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)``, atomically.  Keep ``obj`` to tensors and plain data, so that
    :func:`load_torch` can read it back without unpickling code."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


# --------------------------------------------------------------------------- reading


def _missing(path: Path, what: str) -> ReprolibError:
    return ReprolibError(f"{what} {paths.rel(path)} does not exist")


def load_torch(path: str | os.PathLike, what: str = "checkpoint", map_location="cpu"):
    """Read a file written by :func:`save_torch` with ``weights_only=True``.

    Nothing in the file is executed: a file that holds anything but tensors and plain data
    (a pickled object, code) is refused with a ``ReprolibError``, as is a corrupt one.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.exists():
        raise _missing(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        glob = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln]
        if glob:
            raise ReprolibError(f"{what} {paths.rel(path)} was refused: it holds more than "
                                f"tensors and plain data ({glob[0][:160]}), and reprolib never "
                                f"unpickles objects or code; delete it (or rerun with force) "
                                f"to recompute it") from None
        raise ReprolibError(f"{what} {paths.rel(path)} is corrupt or unreadable "
                            f"(UnpicklingError); delete it (or rerun with force) to "
                            f"recompute it") from None
    except Exception as e:  # noqa: BLE001 - any other failure to read is the same user error
        raise ReprolibError(f"{what} {paths.rel(path)} is corrupt or unreadable "
                            f"({type(e).__name__}); delete it (or rerun with force) to "
                            f"recompute it") from None


def load_json(path: str | os.PathLike, what: str = "record"):
    """``json.load(path)``; a missing or unreadable file is a ``ReprolibError`` naming it."""
    path = Path(path)
    if not path.exists():
        raise _missing(path, what)
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ReprolibError(f"{what} {paths.rel(path)} is corrupt ({e}); delete it (or rerun "
                            f"with force) to recompute it") from None
