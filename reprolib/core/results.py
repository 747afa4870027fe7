"""The results store: one JSON record per run, tables and plots are built from them.

A record lives at ``results/<paper>/<profile>/<name>-<hash>.json`` where ``hash`` is the
first 10 hex digits of the SHA-256 of the run's config (canonical JSON).  It holds the full
config, the metrics, the seed, package versions, device, git revision, command line and wall
time.  ``run_cached`` reuses a record whose config matches instead of recomputing (unless
``force``); the run's checkpoints go to ``results/<paper>/<profile>/ckpt/<name>-<hash>/`` so
a killed run resumes there.  Records are written atomically (temp file + rename), so a
crash never leaves half a record.

Two processes that need the same record at once (two runs of one profile, a grid spread over
machines sharing a results folder) take turns: the first computes it while holding a lock
(``ckpt/.<run id>.lock``, :func:`reprolib.io.file_lock`), the second waits and then reuses its
record; so a stage's checkpoints are never written by two processes.  :data:`ACTIVITY`
counts what this process did (``computed``, ``reused``, ``waited``).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from reprolib import paths
from reprolib.core import io
from reprolib.core.device import world
from reprolib.errors import ReprolibError


def config_hash(config: dict) -> str:
    """Stable 10-hex-digit hash of a JSON-serialisable config."""
    blob = json.dumps(io.to_strict_json(config), sort_keys=True, default=str,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def git_revision() -> str:
    """The project's git revision (with "+dirty" when the tree has changes), or "unknown"."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=paths.ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=paths.ROOT, capture_output=True, text=True, timeout=10).stdout
        return (rev + ("+dirty" if dirty.strip() else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    import numpy

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__}
    for mod in ("torchvision", "timm", "reprolib"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional package is just not listed
            pass
    return out


def device_info() -> str:
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.processor() or platform.machine()} x{os.cpu_count()} threads={torch.get_num_threads()}"


#: What run_cached did in this process: ``computed`` / ``reused`` records, and how many of
#: those it ``waited`` for because another process was computing them.
ACTIVITY: collections.Counter = collections.Counter()


#: Seconds spent in :func:`run_cached` computations nested in the one now running (a
#: parent recomputed inside a stage), so that each record's ``wall_time_s`` is its own.
_NESTED = [0.0]


def record_path(paper: str, profile: str, name: str, config: dict, root=None) -> Path:
    base = Path(root) if root else paths.results_root()
    return base / paper / profile / f"{name}-{config_hash(config)}.json"


def run_cached(paper: str, profile: str, name: str, config: dict,
               fn: Callable[[Path], dict], *, force: bool = False, root=None) -> dict:
    """Return the record of run ``name`` with ``config``, computing it only when needed.

    fn: ``fn(ckpt_dir) -> dict of metrics`` (JSON-serialisable); ``ckpt_dir`` is where the run
        should checkpoint so that a killed run resumes.
    force: recompute even when a record exists (its checkpoints are discarded too).
    Under torch.distributed every rank runs ``fn``; only rank 0 writes the record.
    """
    path = record_path(paper, profile, name, config, root)
    if path.exists() and not force:
        ACTIVITY["reused"] += 1
        return load_record(path)
    entered = time.perf_counter()
    outer, _NESTED[0] = _NESTED[0], 0.0
    try:
        return _compute(paper, profile, name, config, fn, force, path)
    finally:            # the caller's stage counts all of this one's time as upstream
        _NESTED[0] = outer + (time.perf_counter() - entered)


def _compute(paper, profile, name, config, fn, force, path) -> dict:
    ckpt = path.parent / "ckpt" / path.stem
    seen = _mtime(path)
    with _stage_lock(path, f"{paper}/{profile}/{name}") as waited:
        # another process may have written the record while this one waited for the lock
        if _agree(path.exists() and (not force or _mtime(path) != seen)):
            ACTIVITY["reused"] += 1
            ACTIVITY["waited"] += waited
            return load_record(path)
        if force:  # start over: rank 0 removes the old checkpoints, every rank waits for it
            if world()[0] == 0 and ckpt.exists():
                shutil.rmtree(ckpt, ignore_errors=True)
            if world()[1] > 1:
                torch.distributed.barrier()
        t0, started = time.perf_counter(), _dt.datetime.now(_dt.timezone.utc).isoformat()
        metrics = fn(ckpt)
        upstream, total = _NESTED[0], time.perf_counter() - t0
        # wall_time_s is this stage's own time: a parent recomputed inside it (its saved
        # model missing) is timed in its own record and named here as upstream_time_s
        rec = {"paper": paper, "profile": profile, "name": name, "run_id": path.stem,
               "config": config, "metrics": metrics, "seed": config.get("seed"),
               "versions": versions(), "device": device_info(), "git": git_revision(),
               "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
               "started": started, "wall_time_s": round(total - upstream, 3)}
        if upstream > 0:
            rec["upstream_time_s"] = round(upstream, 3)
        if world()[0] == 0:
            io.write_json(rec, path)
        ACTIVITY["computed"] += 1
        return io.to_strict_json(rec)


def _mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _stage_lock(path: Path, what: str):
    """The per-record lock (rank 0 only under torchrun: the other ranks follow its decision)."""
    if world()[0] != 0:
        yield False
        return

    def waiting(pid: str) -> None:
        print(f"[{what}] another process (pid {pid}) is computing this stage; waiting for "
              "its record", file=sys.stderr, flush=True)

    with io.file_lock(path, path.parent / "ckpt" / f".{path.stem}.lock", waiting) as waited:
        yield waited


def _agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (itself outside torchrun)."""
    if world()[1] == 1:
        return flag
    box = [flag]
    torch.distributed.broadcast_object_list(box, src=0)
    return bool(box[0])


#: Metric keys (at any depth of ``metrics``) whose numbers are percentages in [0, 100]:
#: accuracies and COCO APs.
PERCENT_KEYS = re.compile(r"(^|_)(acc|top1)($|_)|(^|_)(bbox|segm)_AP(50|75)?$")
#: Metric keys whose numbers are never negative: sizes, counts, times, losses (a key is one
#: when one of its ``_``-separated words is in the first set, or its last word in the second).
NONNEGATIVE_WORDS = frozenset({"params", "flops", "macs", "bytes", "loss", "epochs", "images"})
NONNEGATIVE_LAST = frozenset({"ms", "s", "us", "size", "repeats", "threads", "epoch"})


def _nonnegative(name: str) -> bool:
    words = name.split("_")
    return bool(NONNEGATIVE_WORDS.intersection(words)) or words[-1] in NONNEGATIVE_LAST


def load_record(path) -> dict:
    """One record, checked before anything uses it (:func:`check_record`): a file that is
    not a reprolib record, one whose key does not hash to its file name (copied or renamed
    over another record), or one whose values are out of their ranges is a ReprolibError
    naming it."""
    path = Path(path)
    rec = io.load_json(path, "results record")
    # a record's check depends on its path and its bytes only: each (path, content) is
    # checked once per process (tables and the README read the same files many times)
    seen = (str(path.resolve()), hashlib.blake2b(path.read_bytes(), digest_size=16).digest())
    if seen not in _CHECKED:
        check_record(rec, path)
        if len(_CHECKED) > 200_000:
            _CHECKED.clear()
        _CHECKED.add(seen)
    return rec


#: (path, content digest) of the records :func:`load_record` has checked in this process.
_CHECKED: set[tuple[str, bytes]] = set()


def check_record(rec, path: Path) -> None:
    """The record schema: ``name`` / ``run_id`` / ``config`` / ``metrics`` present, the config
    hashing to the file name (``<name>-<hash>.json``), paper and profile those of its folder,
    and every metric a finite number within its range (:data:`PERCENT_KEYS`,
    :func:`_nonnegative`)."""
    where = f"results record {paths.rel(path)}"
    fix = "delete it (or rerun with --force) to recompute it"
    if not isinstance(rec, dict) or not isinstance(rec.get("metrics"), dict) \
            or not isinstance(rec.get("config"), dict) or not isinstance(rec.get("name"), str):
        raise ReprolibError(f"{where} is not a reprolib record (it needs a 'name' and 'config' "
                            f"and 'metrics' objects); {fix}")
    expected = f"{rec['name']}-{config_hash(rec['config'])}"
    if path.stem != expected or rec.get("run_id") != path.stem:
        raise ReprolibError(f"{where} does not belong under this name: its config hashes to "
                            f"{expected}.json (run_id {rec.get('run_id')!r}); it was copied or "
                            f"edited; {fix}")
    parts = path.parent.parts
    for key, want in (("profile", parts[-1] if parts else None),
                      ("paper", parts[-2] if len(parts) > 1 else None)):
        if key in rec and rec[key] != want:
            raise ReprolibError(f"{where} is a record of {key} {rec[key]!r}, not of the folder's "
                                f"{want!r}; {fix}")
    if not rec["metrics"]:
        raise ReprolibError(f"{where} holds no metrics; {fix}")
    bad = _bad_value(rec["metrics"], "metrics")
    if bad:
        raise ReprolibError(f"{where}: {bad}; {fix}")


def _bad_value(value, key: str) -> str | None:
    """What is wrong with a metric (and, recursively, what it holds), or None."""
    name = key.rsplit(".", 1)[-1].split("[", 1)[0]
    if isinstance(value, dict):
        for k, v in value.items():
            bad = _bad_value(v, f"{key}.{k}")
            if bad:
                return bad
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            bad = _bad_value(v, f"{key}[{i}]")
            if bad:
                return bad
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    percent = PERCENT_KEYS.search(name)
    if (isinstance(value, str) and (percent or _nonnegative(name))
            or isinstance(value, bool) and percent):
        return f"{key}={value!r} must be a number"
    if not number:
        return None
    if not math.isfinite(value):
        return f"{key}={value!r} is not a finite number"
    if percent and not 0 <= value <= 100:
        return f"{key}={value!r} is a percentage outside [0, 100]"
    if _nonnegative(name) and value < 0:
        return f"{key}={value!r} must not be negative"
    return None


def load_records(paper: str, profile: str | None = None, root=None) -> list[dict]:
    base = (Path(root) if root else paths.results_root()) / paper
    pattern = f"{profile}/*.json" if profile else "*/*.json"
    recs = []
    for p in sorted(base.glob(pattern)):
        recs.append(load_record(p))
    return recs


def load_results(paper: str, profile: str | None = None, root=None) -> pd.DataFrame:
    """All records of ``paper`` (and ``profile``) as a DataFrame (:func:`records_frame`)."""
    return records_frame(load_records(paper, profile, root))


def records_frame(records) -> pd.DataFrame:
    """Records as a DataFrame, one row per run.

    Columns: ``name``, ``profile``, ``run_id``, ``device``, ``git``, ``wall_time_s``, the
    metrics at top level and the config as ``config.<key>``.
    """
    rows = []
    for r in records:
        row = {k: r.get(k) for k in ("name", "profile", "run_id", "device", "git", "wall_time_s")}
        row.update(r.get("metrics", {}))
        row.update({f"config.{k}": v for k, v in r.get("config", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)
