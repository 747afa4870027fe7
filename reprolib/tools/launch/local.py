"""``--on local``: the graph on this machine, at most N stages at once, in dependency order.

A pool of N worker processes (``python -m reprolib.tools.launch.worker --serve``, started as
they are needed): each runs the stages it is handed one after another, in one interpreter
(short stages do not each pay for importing torch), each stage's output appended to
``runs/launch/<paper>-<profile>/local/<run id>.log``.  A stage is handed out only once every
stage it reads has its record; the launcher blocks on the workers' answers (no polling, no
waiting on a lock).  A stage that fails -- or whose worker dies -- is reported with its log's
tail, and the stages after it are never started (``cancelled``); the others go on.  Each
worker uses ``cpus // N`` threads.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

from reprolib import paths
from reprolib.tools.launch.state import State, folder, now


class _Worker:
    def __init__(self, request_json: str, env: dict, answers: queue.Queue):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reprolib.tools.launch.worker", "--serve", request_json],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=paths.ROOT)
        self.stage = None           # the Stage it runs now
        self._reader = threading.Thread(target=self._read, args=(answers,), daemon=True)
        self._reader.start()

    @property
    def job(self) -> str:
        return f"local:{self.proc.pid}"

    def _read(self, answers: queue.Queue) -> None:
        for line in self.proc.stdout:
            try:
                answers.put((self, json.loads(line)))
            except ValueError:
                continue
        answers.put((self, None))          # end of output: the process is gone

    def send(self, stage, log: str) -> None:
        self.stage = stage
        self.proc.stdin.write(json.dumps({"stage": stage.name, "log": log}) + "\n")
        self.proc.stdin.flush()

    def close(self, kill: bool = False) -> None:
        try:
            if kill:
                self.proc.terminate()
            else:
                self.proc.stdin.close()
            self.proc.wait(timeout=30 if not kill else 10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _env(jobs: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    env.setdefault("REPROLIB_LAUNCH_THREADS", env["OMP_NUM_THREADS"])
    return env


def run(request, graph, todo: list, jobs: int, say=print) -> dict[str, dict]:
    """Run the stages ``todo`` (missing, in run order) of ``graph`` with at most ``jobs``
    at once; returns ``{run id: outcome}`` with ``state`` completed / failed / cancelled /
    blocked, ``job``, ``log``, ``seconds``, ``error``, ``upstream`` (the failed stage)."""
    req_json = request.to_json()
    st = State(request.paper, request.profile)
    logs = folder(request.paper, request.profile) / "local"
    logs.mkdir(parents=True, exist_ok=True)
    env = _env(jobs)
    answers: queue.Queue = queue.Queue()
    waiting = list(todo)
    ids = {s.run_id for s in todo}
    out: dict[str, dict] = {}
    idle: list[_Worker] = []
    busy: dict[_Worker, object] = {}
    with st.update() as entries:
        for s in todo:
            entries[s.run_id] = {"stage": s.name, "on": "local", "state": "queued",
                                 "launcher": os.getpid(), "submitted": now(),
                                 "log": str(logs / f"{s.run_id}.log"),
                                 "after": [u.name for u in s.after]}

    def finish(s, **outcome) -> None:
        out[s.run_id] = outcome
        st.put(s.run_id, **outcome, ended=now())

    def cancel_after(failed) -> None:
        """Every waiting stage that reads ``failed``, directly or not: never started."""
        bad = {failed.run_id}
        for s in list(waiting):
            if any(u.run_id in bad for u in s.after):
                bad.add(s.run_id)
                waiting.remove(s)
                finish(s, state="cancelled", upstream=failed.name, log="",
                       error=f"not started: upstream stage {failed.name} failed")
                say(f"  cancelled {s.name}: upstream stage {failed.name} failed")

    try:
        while waiting or busy:
            # hand out every stage whose upstream records exist, while a worker is free
            for s in list(waiting):
                if len(busy) >= jobs:
                    break
                if not all(u.done for u in s.after):
                    continue
                w = idle.pop() if idle else _Worker(req_json, env, answers)
                log = logs / f"{s.run_id}.log"
                with open(log, "a") as f:
                    f.write(f"== {now()} {' '.join(request.argv(s.name))}  (worker pid "
                            f"{w.proc.pid})\n")
                waiting.remove(s)
                busy[w] = s
                st.put(s.run_id, state="running", job=w.job, started=now(), pid=w.proc.pid)
                w.send(s, str(log))
                say(f"  started {s.name} ({w.job})")
            if not busy:
                # what is left reads a stage that is neither done nor part of this launch
                for s in waiting:
                    ups = [u.name for u in s.after if not u.done and u.run_id not in ids]
                    finish(s, state="blocked", log="", error="not started: upstream stage(s) "
                           f"{', '.join(ups) or '?'} have no record")
                waiting.clear()
                break
            w, ans = answers.get()
            s = busy.pop(w)
            log = str(logs / f"{s.run_id}.log")
            if ans is None:                      # the worker died mid-stage
                code = w.proc.wait()
                finish(s, state="failed", job=w.job, log=log,
                       error=f"worker process {w.proc.pid} died (exit code {code})")
                say(f"  FAILED {s.name} ({w.job}): worker died (exit code {code})")
                cancel_after(s)
                continue
            idle.append(w)
            if ans.get("ok"):
                finish(s, state="completed", job=w.job, log=log, seconds=ans.get("seconds"),
                       computed=ans.get("computed"))
                say(f"  done {s.name} in {ans.get('seconds', 0):.1f} s "
                    f"({'computed' if ans.get('computed') else 'reused'})")
            else:
                finish(s, state="failed", job=w.job, log=log, seconds=ans.get("seconds"),
                       error=ans.get("error", "failed"))
                say(f"  FAILED {s.name} ({w.job}): {ans.get('error', 'failed')}")
                cancel_after(s)
    except BaseException:
        for w, s in busy.items():
            finish(s, state="failed", job=w.job, error="interrupted: the launch was stopped")
        for s in waiting:
            st.put(s.run_id, state="interrupted")
        for w in [*busy, *idle]:
            w.close(kill=True)
        raise
    for w in idle:
        w.close()
    return out
