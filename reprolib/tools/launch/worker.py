"""What runs inside a job: one stage of a paper's graph, exactly as ``reprolib compute PAPER
--profile P -p ... --stage NAME`` runs it (the same checked config, so the same record key;
``Pipeline.run(cfg, only=[NAME])``, which needs the upstream records to exist).

* :func:`run_stage` -- the stage in this process; under a multi-task SLURM job each task is a
  DDP rank (submitit's distributed environment sets the ``torchrun`` variables that
  :func:`reprolib.core.device.init_distributed` reads, and ``fit`` takes its DDP path);
* :class:`StageTask` -- the callable submitit pickles (by reference: this module is imported
  in the job); on a timeout or a preemption submitit requeues it and the stage resumes from
  its own checkpoint (``ckpt_dir/last.pt``);
* :func:`serve` -- a local pool's worker process: stages one after another, as the launcher
  sends them, each with its output in its own log (one interpreter for many short stages).

``REPROLIB_LAUNCH_FAIL=NAME[,NAME]`` makes the named stages raise before they start: how the
tests inject a failure (and how to try what a failure does to a grid).

    python -m reprolib.tools.launch.worker '<request json>' STAGE     # one stage
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

try:                       # submitit is a dependency; without it only the local pool works
    from submitit.helpers import Checkpointable as _Task
except ImportError:        # pragma: no cover
    _Task = object

from reprolib.errors import ReprolibError

FAIL_VAR = "REPROLIB_LAUNCH_FAIL"


def injected_failure(name: str) -> None:
    """Raise when ``$REPROLIB_LAUNCH_FAIL`` names ``name``."""
    names = {n.strip() for n in os.environ.get(FAIL_VAR, "").split(",") if n.strip()}
    if name in names:
        raise ReprolibError(f"stage {name!r}: injected failure ({FAIL_VAR}={os.environ[FAIL_VAR]})")


def _distributed() -> None:
    """In a SLURM job of several tasks: export the torchrun variables for this task (rank,
    world size, local rank, master address and port) and initialise torch.distributed."""
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    from reprolib.core.device import init_distributed

    # each rank picks cuda:LOCAL_RANK among the job's GPUs (resolve_device)
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    init_distributed()


def job_id() -> str:
    """This process's job: SLURM's ``<array>_<task>`` or ``<job>``, else ``local:<pid>``."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    if os.environ.get("SLURM_JOB_ID"):
        return os.environ["SLURM_JOB_ID"]
    return f"local:{os.getpid()}"


def run_stage(request_json: str, name: str) -> dict:
    """Run stage ``name`` of the request (a :class:`~reprolib.tools.launch.jobs.Request` as
    JSON); returns ``{"stage", "run_id", "computed", "seconds", "job"}``.  The record is what
    counts: a stage whose record exists is reused, not recomputed."""
    injected_failure(name)
    from reprolib.tools.launch.jobs import Request

    req = Request.from_json(request_json)
    t0 = time.perf_counter()
    # the record's "command": the compute command this job stands for
    sys.argv = req.argv(name)
    cfg = req.config(data=True, download=False)
    _distributed()
    from reprolib.core.device import is_main_process, world
    from reprolib.core.results import ACTIVITY
    from reprolib.experiments import get_experiment

    before = ACTIVITY["computed"]
    pipe = get_experiment(req.paper)
    stage = pipe.graph(cfg)[name]
    if is_main_process() and not stage.done:
        _say_resume(req, stage)
    pipe.run(cfg, only=[name])
    computed = ACTIVITY["computed"] > before
    out = {"stage": name, "run_id": stage.run_id, "computed": computed,
           "seconds": round(time.perf_counter() - t0, 2), "job": job_id(),
           "processes": world()[1]}
    if is_main_process():
        ddp = f", {world()[1]} DDP processes" if world()[1] > 1 else ""
        print(f"[launch] {req.paper}/{req.profile} stage {name} ({stage.run_id}): "
              f"{'computed' if computed else 'reused'} in {out['seconds']:.1f} s, "
              f"job {out['job']}{ddp}", flush=True)
    return out


def _say_resume(req, stage) -> None:
    """One line when an earlier run of the stage left a checkpoint (it resumes from it)."""
    from reprolib.tools.launch.state import show

    found = sorted(stage.ckpt_dir.glob("**/last.pt")) if stage.ckpt_dir.exists() else []
    for ck in found:
        epoch = "?"
        try:
            from reprolib.core.io import load_torch

            epoch = load_torch(ck).get("epoch", "?")
        except Exception:  # noqa: BLE001 - only for the message; fit checks the file itself
            pass
        print(f"[launch] {req.paper}/{req.profile} stage {stage.name}: resuming from "
              f"{show(ck)} (epoch {epoch} done)", flush=True)


class StageTask(_Task):
    """``StageTask()(request_json, name)``: :func:`run_stage` in a submitit job; requeued
    with the same arguments on a timeout or preemption (``checkpoint``: the stage resumes
    from its own checkpoint)."""

    def __call__(self, request_json: str, name: str) -> dict:
        return run_stage(request_json, name)


# --------------------------------------------------------------------------- local pool worker


def _redirect(fd_target: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd_target, 1)
    os.dup2(fd_target, 2)


def serve(request_json: str) -> int:
    """Read ``{"stage": NAME, "log": PATH}`` lines on stdin; run each stage with stdout and
    stderr appended to its log; answer one JSON line per stage (``ok``, ``computed``,
    ``seconds``, ``error``) on the process's original stdout.  Ends at end of input."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    keep_err = os.dup(2)
    _redirect(quiet)
    threads = os.environ.get("REPROLIB_LAUNCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    for line in sys.stdin:
        msg = json.loads(line)
        fd = os.open(msg["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _redirect(fd)
        ans = {"stage": msg["stage"], "ok": False}
        t0 = time.perf_counter()
        try:
            ans.update(run_stage(request_json, msg["stage"]), ok=True)
        except BaseException as e:  # noqa: BLE001 - reported to the launcher, the pool goes on
            traceback.print_exc()
            ans["error"] = f"{type(e).__name__}: {e}"
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                ans["seconds"] = round(time.perf_counter() - t0, 2)
                reply.write(json.dumps(ans) + "\n")
                raise
        finally:
            _redirect(quiet)
            os.close(fd)
        ans.setdefault("seconds", round(time.perf_counter() - t0, 2))
        reply.write(json.dumps(ans) + "\n")
    os.dup2(keep_err, 2)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--serve":
        return serve(argv[1])
    if len(argv) == 2:
        run_stage(argv[0], argv[1])
        return 0
    print("usage: python -m reprolib.tools.launch.worker REQUEST_JSON STAGE | --serve "
          "REQUEST_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
