"""Command line: ``reprolib list | run | compute | reproduce | readme`` (also
``python -m reprolib``).

    reprolib list                                   papers, profiles, models, data sets
    reprolib run sidt --profile cpu -p finetune.epochs=3 [--force]
    reprolib compute pe --profile paper             the pipeline without the notebook
    torchrun --nproc_per_node=8 -m reprolib compute pe --profile paper -p data_root=/imagenet
    reprolib reproduce --profile smoke              every notebook at one profile
    reprolib readme [--check]                       regenerate README.md's results section

``run`` executes ``notebooks/PAPER.ipynb`` with papermill (parameters ``profile``,
``overrides``, ``force``) into ``runs/PAPER-PROFILE.ipynb``; the notebook writes its results
records, tables and figures.  ``compute`` runs the same pipeline
(``reprolib.experiments.PAPER.run``) in this process, which is how ``torchrun`` starts it on
several GPUs.  Bad input (unknown paper, profile or override key, a value of the wrong type)
is one line on stderr and exit code 2, checked before anything is written.  A notebook that
fails leaves no output notebook behind (exit code 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from reprolib import paths
from reprolib.configs import parse_overrides
from reprolib.errors import ReprolibError


def notebook_path(paper: str) -> Path:
    return paths.ROOT / "notebooks" / f"{paper}.ipynb"


def check_run(paper: str, profile: str, overrides: dict):
    """Validate a run request without side effects; returns the resolved config."""
    from reprolib.configs import get_config
    from reprolib.data import check_dataset

    cfg = get_config(paper, profile, **overrides)
    check_dataset(cfg.dataset)
    if cfg.dataset == "coco":        # COCO's layout under data_root, before a kernel starts
        from reprolib.coco import coco_root

        coco_root("coco", cfg.data_root)
    if not notebook_path(paper).exists():
        raise ReprolibError(f"notebook notebooks/{paper}.ipynb is missing")
    return cfg


def _ipc_kernel_manager():
    """A Jupyter kernel manager on IPC (unix socket) transport: local, and without the
    "Kernel is running over TCP without encryption" warning of every TCP kernel."""
    from jupyter_client.manager import KernelManager

    class IPCKernelManager(KernelManager):
        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            super().__init__(**kw)

    return IPCKernelManager


def run_notebook(paper: str, profile: str = "smoke", overrides: dict | None = None,
                 force: bool = False, output: str | None = None) -> Path:
    """Execute ``notebooks/PAPER.ipynb`` at ``profile``; returns the executed notebook's path."""
    import papermill as pm

    from reprolib.train import show_progress

    overrides = overrides or {}
    check_run(paper, profile, overrides)
    out = Path(output) if output else paths.runs_root() / f"{paper}-{profile}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.partial.ipynb")
    t0 = time.perf_counter()
    # The kernel inherits this: fit's per-epoch bars stay out of the executed notebook, while
    # papermill's own bar shows progress over the cells here.
    os.environ.setdefault("REPROLIB_NO_PROGRESS", "1")
    try:
        pm.execute_notebook(str(notebook_path(paper)), str(tmp),
                            parameters={"profile": profile, "overrides": overrides, "force": force},
                            cwd=str(paths.ROOT / "notebooks"), kernel_name="python3",
                            progress_bar=show_progress(), log_output=False,
                            kernel_manager_class=_ipc_kernel_manager())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"{paper} [{profile}] done in {time.perf_counter() - t0:.0f} s -> {paths.rel(out)}")
    return out


def cmd_list(_args) -> int:
    import reprolib
    from reprolib.configs import papers
    from reprolib.data import DATASETS

    print("papers (notebooks) and their profiles:")
    for name, p in papers().items():
        print(f"  {name:16s} {', '.join(p.presets):28s} {p.title}")
    print("models:")
    print("  " + ", ".join(reprolib.list_models()))
    print("data sets:")
    print("  " + ", ".join(DATASETS))
    return 0


def cmd_run(args) -> int:
    run_notebook(args.paper, args.profile, parse_overrides(args.param), args.force, args.output)
    return 0


def cmd_compute(args) -> int:
    from reprolib.device import init_distributed, is_main_process
    from reprolib.experiments import get_experiment

    cfg = check_run(args.paper, args.profile, parse_overrides(args.param))
    init_distributed()
    t0 = time.perf_counter()
    recs = get_experiment(args.paper).run(cfg, force=args.force)
    if is_main_process():
        print(f"{args.paper} [{args.profile}]: {len(recs)} stages in "
              f"{time.perf_counter() - t0:.0f} s; records in "
              f"{paths.rel(paths.results_root() / args.paper / args.profile)}/")
    return 0


def cmd_reproduce(args) -> int:
    from reprolib.configs import papers
    from reprolib.experiments import EXPERIMENTS

    todo = [n for n in EXPERIMENTS if args.profile in papers()[n].presets]
    if not todo:
        raise ReprolibError(f"no notebook has a profile {args.profile!r}")
    for n in todo:  # validate everything before running anything
        check_run(n, args.profile, {})
    skipped = sorted(set(EXPERIMENTS) - set(todo))
    if skipped:
        print(f"(no {args.profile!r} profile, skipped: {', '.join(skipped)})")
    t0 = time.perf_counter()
    for n in todo:
        run_notebook(n, args.profile, {}, args.force)
    print(f"reproduced {len(todo)} notebooks at profile {args.profile!r} in "
          f"{time.perf_counter() - t0:.0f} s; figures in {paths.rel(paths.figures_root())}/")
    return 0


def cmd_readme(args) -> int:
    from reprolib.experiments.readme import update_readme

    changed = update_readme(profile=args.profile, check=args.check)
    if args.check:
        print("README.md is out of date: run `reprolib readme`" if changed
              else "README.md is up to date")
        return 1 if changed else 0
    print("README.md updated" if changed else "README.md was up to date")
    return 0


def _paper_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paper")
    p.add_argument("--profile", default="smoke")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. finetune.epochs=3 (repeatable)")
    p.add_argument("--force", action="store_true", help="recompute runs that have records")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reprolib", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="papers, profiles, models and data sets").set_defaults(fn=cmd_list)
    r = sub.add_parser("run", help="execute one paper's notebook with papermill")
    _paper_args(r)
    r.add_argument("--output", help="executed notebook path (default runs/PAPER-PROFILE.ipynb)")
    r.set_defaults(fn=cmd_run)
    c = sub.add_parser("compute", help="run one paper's pipeline in this process (torchrun too)")
    _paper_args(c)
    c.set_defaults(fn=cmd_compute)
    a = sub.add_parser("reproduce", help="execute every notebook at one profile")
    a.add_argument("--profile", default="smoke")
    a.add_argument("--force", action="store_true")
    a.set_defaults(fn=cmd_reproduce)
    m = sub.add_parser("readme", help="regenerate README.md's results section from the records")
    m.add_argument("--profile", default="cpu", help="the profile whose records it shows")
    m.add_argument("--check", action="store_true", help="only say whether it is up to date")
    m.set_defaults(fn=cmd_readme)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ReprolibError as e:
        print(f"reprolib: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reprolib: interrupted; finished runs are kept and resume", file=sys.stderr)
        return 130
    except Exception as e:  # papermill's PapermillExecutionError and friends
        if type(e).__name__ == "PapermillExecutionError":
            if e.ename == "ReprolibError":
                print(f"reprolib: error: {e.evalue}", file=sys.stderr)
                return 2
            print(f"reprolib: the notebook failed in cell {e.exec_count}: {e.ename}: {e.evalue}",
                  file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
