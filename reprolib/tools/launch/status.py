"""``reprolib status PAPER --profile P``: every stage of the graph as ``done`` (its record
exists), ``queued``, ``running``, ``failed``, ``cancelled`` (never ran: an upstream stage
failed, or the job was cancelled) or ``missing`` (nothing launched, or a launch that
stopped), with its job id, elapsed time and log, and the tail of each failed stage's log.
The records say what is done; the launch state (:mod:`~reprolib.tools.launch.state`) and the
scheduler say where the rest is.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from reprolib import paths
from reprolib.tools.launch import slurm
from reprolib.tools.launch.state import State, seconds_since, show

STATES = ("done", "queued", "running", "failed", "cancelled", "missing")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    try:           # the same program, not a reused pid
        return b"reprolib" in Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except OSError:
        return True


def _clock(seconds) -> str:
    if seconds is None:
        return ""
    s = int(round(float(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def slurm_clock(text: str) -> str:
    """SLURM's ``[D-]HH:MM:SS`` (or ``MM:SS``) as ``H:MM:SS``."""
    try:
        days, _, hms = text.rpartition("-")
        parts = [int(x) for x in hms.split(":")]
    except ValueError:
        return text
    while len(parts) < 3:
        parts.insert(0, 0)
    return _clock(int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2])


def tail(path, lines: int = 10) -> list[str]:
    """The last ``lines`` lines of a log, progress bars' carriage returns resolved."""
    p = Path(path) if path else None
    if p is None or not p.exists():
        return []
    with open(p, "rb") as f:
        f.seek(max(0, p.stat().st_size - 64 * 1024))
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line.rsplit("\r", 1)[-1]).rstrip()
        if line:
            out.append(line)
    return out[-lines:]


def rows(graph, paper: str, profile: str) -> list[dict]:
    """One dict per stage (run order): ``stage``, ``run_id``, ``state`` (:data:`STATES`),
    ``job``, ``on``, ``elapsed`` (H:MM:SS), ``log``, ``detail`` and ``after``."""
    entries = State(paper, profile).read()
    ids = [e["job"] for s in graph if (e := entries.get(s.run_id)) and e.get("on") == "slurm"
           and e.get("job")]
    sched = slurm.job_states(ids) if ids else {}
    out = []
    for s in graph:
        e = entries.get(s.run_id, {})
        job, log, on = e.get("job", ""), e.get("log", ""), e.get("on", "")
        row = {"stage": s.name, "run_id": s.run_id, "job": job, "on": on, "log": log,
               "elapsed": "", "detail": "", "after": [u.name for u in s.after]}
        if s.done:
            row["state"] = "done"
            try:
                row["elapsed"] = _clock(json.loads(s.path.read_text()).get("wall_time_s"))
            except (OSError, ValueError):
                pass
            out.append(row)
            continue
        if on == "slurm" and job:
            info = sched.get(job)
            if info is None and (seconds_since(e.get("submitted")) or 1e9) < 60:
                row.update(state="queued", detail="just submitted")
            elif info is None:
                row.update(state="missing", detail=f"SLURM does not know job {job} (any more)")
            else:
                k = slurm.kind(info["state"])
                row["elapsed"] = slurm_clock(info["elapsed"])
                if k in ("queued", "running"):
                    row["state"] = k
                    if k == "queued" and info["reason"] not in ("", "None"):
                        row["detail"] = info["reason"]
                elif k == "completed":
                    row.update(state="failed", detail="the job completed without writing the "
                               "record")
                elif k == "cancelled":
                    row.update(state="cancelled", detail=info["state"])
                elif k == "failed":
                    row.update(state="failed", detail=f"{info['state']}, exit {info['exit']}")
                else:
                    row.update(state="missing", detail=f"job {job}: {info['state']}")
        elif on == "local":
            st = e.get("state")
            if st == "running" and _alive(e.get("pid")):
                row.update(state="running", elapsed=_clock(seconds_since(e.get("started"))))
            elif st == "queued" and _alive(e.get("launcher")):
                row["state"] = "queued"
            elif st in ("failed", "cancelled"):
                row.update(state=st, detail=e.get("error", ""),
                           elapsed=_clock(e.get("seconds")))
            elif st == "completed":
                row.update(state="failed", detail="the stage ended without writing the record")
            else:
                row.update(state="missing", detail="its local launch stopped before it ran")
        else:
            row["state"] = "missing"
        out.append(row)
    # a cancelled stage: name the failed (or cancelled) upstream stage
    by = {r["stage"]: r for r in out}
    for r in out:
        if r["state"] == "cancelled" and r["on"] == "slurm":
            ups = [u for u in r["after"] if by[u]["state"] in ("failed", "cancelled")]
            if ups:
                r["detail"] = f"never ran: upstream stage {ups[0]} {by[ups[0]]['state']}"
            else:
                r["detail"] = f"{r['detail']}: cancelled while it ran or waited".strip(": ")
    return out


def counts(rs: list[dict]) -> dict[str, int]:
    return {k: sum(r["state"] == k for r in rs) for k in STATES}


def format_rows(paper: str, profile: str, rs: list[dict], tail_lines: int = 10) -> str:
    """The rows as text: a header with the counts, one line per stage, then the tail of the
    log of every failed stage."""
    c = counts(rs)
    where = show(paths.results_root() / paper / profile)
    lines = [f"status: {paper} --profile {profile}: {len(rs)} stages: "
             + ", ".join(f"{c[k]} {k}" for k in STATES) + f" (records in {where}/)", ""]
    w = max([len(r["stage"]) for r in rs] + [5])
    wj = max([len(r["job"]) for r in rs] + [3])
    lines.append(f"  {'state':<10}{'stage':<{w + 2}}{'job':<{wj + 2}}{'elapsed':<10}log / detail")
    for r in rs:
        log = show(r["log"]) if r["log"] and (Path(r["log"]).exists() or r["state"] in
                                              ("queued", "running")) else ""
        extra = " · ".join(x for x in (log, r["detail"]) if x)
        lines.append(f"  {r['state']:<10}{r['stage']:<{w + 2}}{r['job'] or '-':<{wj + 2}}"
                     f"{r['elapsed'] or '-':<10}{extra}")
    for r in rs:
        if r["state"] == "failed":
            lines += ["", f"failed: stage {r['stage']} (job {r['job'] or '-'}): "
                      f"{r['detail']}; last lines of {show(r['log']) or 'its log'}:"]
            lines += [f"    {x}" for x in tail(r["log"], tail_lines)] or ["    (no log)"]
    return "\n".join(lines)
