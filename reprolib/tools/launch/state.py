"""What was launched: ``runs/launch/<paper>-<profile>/state.json`` (``REPROLIB_RUNS`` moves
``runs/``), one entry per stage run id -- where it went (``slurm`` / ``local``), its job id,
its log, when it was submitted and, for a local run, its outcome.  Records stay the truth
about what is done; this file only says where the rest is.

The file is rewritten atomically under a lock (:func:`reprolib.core.io.file_lock`), so two
launches and a ``status`` never see half of it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from pathlib import Path

from reprolib import paths
from reprolib.errors import ReprolibError


def folder(paper: str, profile: str) -> Path:
    """``runs/launch/<paper>-<profile>/``: the state file, SLURM's logs (``jobs/``) and the
    local runs' logs (``local/``)."""
    return paths.runs_root() / "launch" / f"{paper}-{profile}"


def show(path) -> str:
    """``path`` relative to the project when it is inside it, else absolute (for printing)."""
    if not path:
        return ""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(paths.ROOT.resolve()))
    except ValueError:
        return str(p)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def seconds_since(iso: str | None, until: str | None = None) -> float | None:
    if not iso:
        return None
    t0 = _dt.datetime.fromisoformat(iso)
    t1 = _dt.datetime.fromisoformat(until) if until else _dt.datetime.now(_dt.timezone.utc)
    return max(0.0, (t1 - t0).total_seconds())


class State:
    """The state file of one paper and profile: ``entries`` by stage run id."""

    def __init__(self, paper: str, profile: str):
        self.paper, self.profile = paper, profile
        self.path = folder(paper, profile) / "state.json"

    def read(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            return dict(data["stages"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ReprolibError(f"launch state {paths.rel(self.path)} is unreadable ({e}); "
                                "remove it (the records say what is done) and launch "
                                "again") from None

    @contextlib.contextmanager
    def update(self):
        """``with state.update() as entries: entries[run_id] = {...}``: read, change and
        write back under the file's lock."""
        from reprolib.core import io

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with io.file_lock(self.path):
            entries = self.read()
            yield entries
            io.write_json({"paper": self.paper, "profile": self.profile, "stages": entries},
                          self.path)

    def put(self, run_id: str, **entry) -> None:
        with self.update() as entries:
            entries[run_id] = {**entries.get(run_id, {}), **entry}
