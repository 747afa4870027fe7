"""Every file reprolib writes or reads goes through here.

Writing is atomic: the content goes to a uniquely named temporary file in the target's folder
(``.NAME.<pid>.<random>.tmp``) and is renamed over the target, so a killed process never leaves
half a file and two processes writing the same file never collide on the temporary name.
JSON is strict (``NaN`` / ``Infinity`` are written as ``null``), so any JSON parser reads it.

Two processes that would make the same file take turns: :func:`file_lock` holds an exclusive
lock (``fcntl.flock`` on a lock file) for as long as one of them works on it; the results
store uses it so that a stage runs once when two runs share a results folder.

Reading never runs code from a file: training checkpoints load with
``torch.load(..., weights_only=True)`` (tensors, numbers, strings, lists, dicts only) and model
weights are safetensors.  A missing, corrupt or refused file is one ``ReprolibError`` that
names the file and what to do.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

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
    except RuntimeError as e:    # torch.save's writer reports a failed write as RuntimeError
        if "write" not in str(e).lower():
            raise
        code = errno.ENOSPC if _disk_full(path.parent) else errno.EIO
        raise OSError(code, os.strerror(code), str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _disk_full(folder: Path, below: int = 2**20) -> bool:
    try:
        return shutil.disk_usage(folder).free < below
    except OSError:
        return False


@contextmanager
def file_lock(target: str | os.PathLike, lock: str | os.PathLike | None = None,
              waiting: Callable[[str], None] | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on ``target`` while the ``with`` block runs; yields whether
    another process held it first (this one waited for it).

    The lock is ``fcntl.flock`` on the lock file ``lock`` (default ``.<name>.lock`` beside
    ``target``), which holds the owner's pid and is removed on release; the kernel releases a
    killed process's lock, so a crash never leaves the target locked.  ``waiting(pid)`` is
    called once before blocking on a lock another process holds.  Without ``fcntl`` (Windows)
    it does not lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield False
        return
    target = Path(target)
    lock = Path(lock) if lock else target.with_name(f".{target.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None and not waited:
                waiting(os.pread(fd, 32, 0).decode(errors="replace").strip() or "?")
            waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # the previous owner removes the file on release: then lock the new one
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield waited
    finally:
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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


# --------------------------------------------------------------------------- resuming


def check_resume(ck, path, config: dict, what: str, keys: tuple = ()) -> dict:
    """A training checkpoint ``ck`` (read by :func:`load_torch`) may be resumed by the run
    whose config is ``config`` only when it holds ``keys`` and the config it was saved with
    equals ``config``; otherwise one ``ReprolibError`` names the file and the differing fields
    (a checkpoint copied from another stage, or left by a run with other settings).  Returns
    ``ck``."""
    where = f"{what} {paths.rel(path)}"
    fix = "delete it (or rerun with --force) to start the stage over"
    if not isinstance(ck, dict):
        raise ReprolibError(f"{where} is not a reprolib checkpoint; {fix}")
    missing = [k for k in (*keys, "config") if k not in ck]
    if missing:
        raise ReprolibError(f"{where} lacks {', '.join(map(repr, missing))}; {fix}")
    saved = ck["config"]
    if not isinstance(saved, dict):
        raise ReprolibError(f"{where}: its saved config is not a dict; {fix}")
    saved, now = to_strict_json(saved), to_strict_json(config)
    diff = [k for k in sorted(now) if saved.get(k, "<unset>") != now[k]]
    if diff:
        shown = ", ".join(f"{k} {saved.get(k, '<unset>')!r} (checkpoint) vs "
                          f"{now.get(k, '<unset>')!r} (this run)" for k in diff[:4])
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise ReprolibError(f"{where} was written by a run with other settings: {shown}{more}; "
                            f"{fix}")
    return ck


def load_state(target, state, path, what: str, part: str) -> None:
    """``target.load_state_dict(state)`` (a model, optimizer, scheduler or generator state
    from a checkpoint); a state that does not fit (other shapes, missing or unexpected
    entries, wrong types) is one ``ReprolibError`` naming the file and the part."""
    try:
        if hasattr(target, "load_state_dict"):
            target.load_state_dict(state)
        else:
            target.set_state(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ReprolibError(f"{what} {paths.rel(path)}: its {part} does not fit this run "
                            f"({first}); delete it (or rerun with --force) to start the stage "
                            "over") from None


# --------------------------------------------------------------------------- per-image results


def pack_bits(flags) -> dict:
    """A sequence of booleans (per test image: classified right?) as JSON data:
    ``{"n": count, "bits": base64 of the bits packed eight to a byte}`` (1,017 images: 172
    characters)."""
    import base64

    import numpy as np

    a = np.asarray(flags, dtype=bool).ravel()
    return {"n": int(a.size), "bits": base64.b64encode(np.packbits(a).tobytes()).decode()}


def unpack_bits(packed: dict):
    """The bool array :func:`pack_bits` packed; a ReprolibError when it is malformed."""
    import base64
    import binascii

    import numpy as np

    try:
        n = int(packed["n"])
        raw = np.frombuffer(base64.b64decode(packed["bits"], validate=True), dtype=np.uint8)
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise ReprolibError(f"per-image results {str(packed)[:60]} are malformed ({e})") from None
    bits = np.unpackbits(raw)
    if n < 0 or len(bits) < n or len(bits) - n >= 8:
        raise ReprolibError(f"per-image results hold {len(bits)} bits for n = {n}")
    return bits[:n].astype(bool)
