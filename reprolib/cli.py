"""Command line: ``reprolib list | run | compute | plan | clean | reproduce | readme | bench |
export`` (also ``python -m reprolib``).

    reprolib list [PAPER]                           papers, profiles, models, data sets; with
                                                    PAPER every override key, its type, value
                                                    per profile and meaning
    reprolib run sidt --profile cpu -p finetune.epochs=3 [--force]
    reprolib run sidt --help                        the options above and sidt's keys
    reprolib compute pe --profile paper --data-root /imagenet   the pipeline, no notebook
    reprolib plan pe --profile paper --nproc 8      what would run, beside the paper's values
    torchrun --nproc_per_node=8 -m reprolib compute pe --profile paper --data-root /imagenet
    reprolib clean sidt --profile evidence [--yes]  records no stage of the profile names
    reprolib reproduce --profile smoke              every notebook at one profile
    reprolib readme [--check]                       regenerate README.md's results section
    reprolib bench --profile cpu [--only sidt vtp]  measured speedup vs FLOP reduction
    reprolib export runs/swin_p40 --format onnx     a saved compressed model -> runs/swin_p40.onnx

``run`` executes ``notebooks/PAPER.ipynb`` with papermill (parameters ``profile``,
``overrides``, ``force``) into ``runs/PAPER-PROFILE.ipynb``; the notebook writes its results
records, tables and figures.  ``compute`` runs the same pipeline
(``reprolib.experiments.PAPER.run``) in this process, which is how ``torchrun`` starts it on
several GPUs.

Before any work both check everything they can (:func:`check_run`): the config (unknown
keys, types, ranges, whole grids), the device, the output path, that the results / figures /
runs folders are writable with space left, and the data -- present and readable, or fetched
now where that is allowed (into ``data/``; into another ``--data-root`` only with
``--download``).  Bad input is one line on stderr and exit code 2, with nothing written.
``list`` / ``--help`` / a bad value answer without importing torch.

A notebook that fails, a kernel that dies, Ctrl-C (exit 130) and SIGTERM (exit 143) leave no
partial notebook behind and print one line; finished stages are records and are reused by
the next run, and a killed stage resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
import time

from reprolib import paths
from reprolib.configs import parse_overrides
from reprolib.errors import ReprolibError
from reprolib.tools.runner import (KernelDied, check_output, check_run,  # noqa: F401
                                   check_writable, clean_partials, datasets_of,
                                   notebook_parameters, notebook_path, run_notebook)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup (``finally``) runs."""


# --------------------------------------------------------------------------- commands


def cmd_list(args) -> int:
    from reprolib.configs import describe, papers
    from reprolib.data import DATASETS
    from reprolib.core.registry import list_models

    if args.paper:
        print(describe(args.paper))
        return 0
    print("papers (notebooks) and their profiles:")
    for name, p in papers().items():
        if p.notebook:
            print(f"  {name:16s} {', '.join(p.presets):28s} {p.title}")
    print("tools with a config of their own and their profiles:")
    for name, p in papers().items():
        if not p.notebook:
            print(f"  {name:16s} {', '.join(p.presets):28s} {p.title}")
    print("models:")
    print("  " + ", ".join(list_models()))
    print("data sets:")
    print("  " + ", ".join(DATASETS))
    print("every option of a paper: reprolib list PAPER (or reprolib run PAPER --help)")
    return 0


def cmd_run(args) -> int:
    over = parse_overrides(args.param)
    check_run(args.paper, args.profile, over, output=args.output, data_root=args.data_root,
              download=args.download)
    run_notebook(args.paper, args.profile, over, args.force, args.output, checked=True,
                 data_root=args.data_root)
    return 0


def cmd_compute(args) -> int:
    cfg = check_run(args.paper, args.profile, parse_overrides(args.param),
                    data_root=args.data_root, download=args.download)
    from reprolib.core.device import init_distributed, is_main_process
    from reprolib.experiments import get_experiment
    from reprolib.core.results import ACTIVITY

    init_distributed()
    t0 = time.perf_counter()
    only = [n for part in args.stage for n in part.split(",") if n.strip()] if args.stage else None
    recs = get_experiment(args.paper).run(cfg, force=args.force, only=only)
    if is_main_process():
        waited = f", {ACTIVITY['waited']} after waiting for another process" \
            if ACTIVITY["waited"] else ""
        print(f"{args.paper} [{args.profile}]: {len(recs)} stages in "
              f"{time.perf_counter() - t0:.0f} s ({ACTIVITY['computed']} computed, "
              f"{ACTIVITY['reused']} reused{waited}); records in "
              f"{paths.rel(paths.results_root() / args.paper / args.profile)}/")
    return 0


def cmd_clean(args) -> int:
    cfg = check_run(args.paper, args.profile, parse_overrides(args.param), data=False)
    from reprolib.experiments import get_experiment
    from reprolib.core.pipeline import foreign_files, remove_record, stale_records

    stages = get_experiment(args.paper).stages(cfg)
    stale = stale_records(stages)
    where = paths.rel(paths.results_root() / args.paper / args.profile)
    print(f"{args.paper} [{args.profile}]: {len(stages)} stages, {len(stale)} records in "
          f"{where}/ that none of them names")
    for p in stale:
        print(f"  {p.name}")
        if args.yes:
            remove_record(p)
    foreign = foreign_files(stages)
    if foreign:
        print(f"left alone, not named like a record (remove them by hand if they are yours): "
              f"{', '.join(p.name for p in foreign)}")
    if stale:
        print("removed, with their checkpoints" if args.yes else
              "nothing removed: add --yes to remove them and their checkpoints (records of "
              "runs made with -p overrides count as stale unless the same -p is given here)")
    return 0


def cmd_reproduce(args) -> int:
    from reprolib.configs import papers
    from reprolib.experiments import EXPERIMENTS

    todo = [n for n in EXPERIMENTS if args.profile in papers()[n].presets]
    if not todo:
        raise ReprolibError(f"no notebook has a profile {args.profile!r}")
    for n in todo:  # check everything (data included) before running anything
        check_run(n, args.profile, {}, data_root=args.data_root, download=args.download)
    skipped = sorted(set(EXPERIMENTS) - set(todo))
    if skipped:
        print(f"(no {args.profile!r} profile, skipped: {', '.join(skipped)})")
    t0 = time.perf_counter()
    for n in todo:
        run_notebook(n, args.profile, {}, args.force, checked=True, data_root=args.data_root)
    print(f"reproduced {len(todo)} notebooks at profile {args.profile!r} in "
          f"{time.perf_counter() - t0:.0f} s; figures in {paths.rel(paths.figures_root())}/")
    return 0


def cmd_readme(args) -> int:
    from reprolib.tools.readme import update_readme

    changed = update_readme(profile=args.profile, check=args.check)
    if args.check:
        print("README.md is out of date: run `reprolib readme`" if changed
              else "README.md is up to date")
        return 1 if changed else 0
    print("README.md updated" if changed else "README.md was up to date")
    return 0


def cmd_bench(args) -> int:
    from reprolib.tools import bench
    from reprolib.core.device import resolve_device

    over = parse_overrides(args.param)
    for key, val in (("threads", args.threads), ("device", args.device),
                     ("variants", tuple(args.variant or ()) or None),
                     ("groups", tuple(args.only or ()) or None)):
        if val is not None:
            over[key] = val
    cfg = bench.get_config(args.profile, **over)
    resolve_device(cfg.device)                      # no CUDA for device=cuda: error, nothing run
    t0 = time.perf_counter()
    bench.run(cfg, force=args.force)
    for p in bench.write_outputs(cfg):
        print(f"wrote {paths.rel(p)}")
    print(bench.summary(cfg))
    print(f"bench [{args.profile}] done in {time.perf_counter() - t0:.0f} s")
    return 0


BENCH_EPILOG = """Each family (a dense parent and its compressed models) is one cached record in
results/bench/PROFILE/: inference at batch 1 and at a large batch, and a training step,
timed interleaved (warm-up, median of repeats; CUDA synchronised), with device, precision,
batch sizes, threads and torch/CUDA versions.  Outputs in figures/bench/: the table
speedup-PROFILE.md, the same as a CSV named like timm's benchmark files
(benchmark-PRECISION-LAYOUT-ptVER-cuVER|cpu-DEVICE-PROFILE.csv), fit_loops-PROFILE.md (fit vs a
bare loop vs a code-book loop) and the figure speedup_vs_flops-PROFILE.png.
Profiles: smoke (tiny models, seconds), cpu (the papers' sizes where 2 CPU cores allow,
~30 min), gpu (batch 256; fp32, bf16, channels_last, compile).
Keys for -p: reprolib list bench (e.g. -p sidt_batch=32 -p repeats=5).
"""


def cmd_export(args) -> int:
    from reprolib.core.export import export_saved

    r = export_saved(args.path, args.format, input_size=args.input_size, opset=args.opset)
    ties = r.get("ties", {})
    tied = ("no tied weights" if ties.get("stay_tied") is None else
            f"{len(ties['copies'])} tied weights, each one initializer" if ties["stay_tied"] else
            f"tied weights copied: {sorted(n for n, c in ties['copies'].items() if c != 1)}")
    print(f"{paths.rel(r['onnx'])}: opset {r['opset']}, input {tuple(r['input_size'])}, "
          f"ONNX Runtime vs PyTorch max abs diff {r['max_abs_diff']:.2e} (outputs up to "
          f"{r['max_abs_output']:.3g}), torch.export {r['torch_export_max_abs_diff']:.2e}; "
          f"{tied}")
    return 0


def cmd_graph(args) -> int:
    from reprolib.tools.graph import format_graph, graph_rows

    rows = graph_rows(args.paper, args.profile, **parse_overrides(args.param))
    if args.json:
        import json

        print(json.dumps(rows, indent=1))
    else:
        print(format_graph(args.paper, args.profile, rows))
    return 0


def cmd_plan(args) -> int:
    from reprolib.tools.plan import format_plan, plan

    p = plan(args.paper, args.profile, args.nproc, **parse_overrides(args.param))
    if args.json:
        import json

        print(json.dumps(p, indent=1))
    else:
        print(format_plan(p, compact=args.brief))
    return 0


# --------------------------------------------------------------------------- parser


class _PaperHelp(argparse.Action):
    """``-h`` / ``--help`` that, after a paper name, also lists that paper's override keys."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help=None):
        super().__init__(option_strings, dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from reprolib.configs import describe

        parser.print_help()
        paper = getattr(namespace, "paper", None)
        if paper:
            try:
                print("\n" + describe(paper))
            except ReprolibError as e:
                print(f"\n{e}")
        else:
            print("\nevery override key of a paper: reprolib list PAPER "
                  "(or reprolib run PAPER --help)")
        parser.exit()


def _paper_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--help", action=_PaperHelp,
                   help="show this help and, after PAPER, every override key of that paper")
    p.add_argument("paper", help="the notebook: quickstart, sidt, pe, vtp_svd, "
                                 "metaformer_nas, templates (reprolib list)")
    p.add_argument("--profile", default="smoke",
                   help="preset: smoke (default), cpu, evidence (the claims test, 3-5 seeds), gpu, "
                        "paper; reprolib list PAPER shows the ones a paper has")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. finetune.epochs=3 (repeatable; "
                        "reprolib list PAPER shows every key)")
    _data_args(p)
    p.add_argument("--force", action="store_true", help="recompute runs that have records")


def _size(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not C,H,W (e.g. 3,32,32)") from None


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="folder holding the torchvision data sets (CIFAR, Flowers-102) or "
                        "ImageNet's train/ and val/ (default data/; same as -p data_root=DIR)")
    p.add_argument("--download", action="store_true",
                   help="download a missing data set into --data-root (into data/ it is "
                        "downloaded without asking)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reprolib", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="papers, profiles, models and data sets; with PAPER "
                                     "every override key of that paper")
    ls.add_argument("paper", nargs="?", help="show every override key of this paper")
    ls.set_defaults(fn=cmd_list)
    r = sub.add_parser("run", help="execute one paper's notebook with papermill", add_help=False)
    _paper_args(r)
    r.add_argument("--output", help="executed notebook path (default runs/PAPER-PROFILE.ipynb)")
    r.set_defaults(fn=cmd_run)
    c = sub.add_parser("compute", help="run one paper's pipeline in this process (torchrun too)",
                       add_help=False)
    _paper_args(c)
    c.add_argument("--stage", action="append", metavar="NAME[,NAME]",
                   help="run only these stages (their upstream records must exist; "
                        "reprolib graph PAPER lists the stages); repeatable")
    c.set_defaults(fn=cmd_compute)
    gr = sub.add_parser("graph", help="a paper's stage graph: stages, edges, done or missing, "
                        "resources (nothing runs)")
    gr.add_argument("paper", help="the paper (reprolib list)")
    gr.add_argument("--profile", default="smoke", help="preset (default smoke)")
    gr.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config value (repeatable)")
    gr.add_argument("--json", action="store_true", help="the graph as JSON")
    gr.set_defaults(fn=cmd_graph)
    pl = sub.add_parser("plan", help="what a profile would run, per stage, beside the paper's "
                        "values (nothing is trained or read)")
    pl.add_argument("paper")
    pl.add_argument("--profile", default="smoke")
    pl.add_argument("--nproc", type=int, default=1, help="processes under torchrun (default 1)")
    pl.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config value (repeatable)")
    pl.add_argument("--json", action="store_true", help="the plan as JSON")
    pl.add_argument("--brief", action="store_true", help="five lines per stage")
    pl.set_defaults(fn=cmd_plan)
    cl = sub.add_parser("clean", help="list (with --yes remove) a profile's records that its "
                        "stages no longer name (left by an earlier config)")
    cl.add_argument("paper")
    cl.add_argument("--profile", default="smoke")
    cl.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config value (repeatable): the config whose records "
                         "are kept")
    cl.add_argument("--yes", action="store_true", help="remove them and their checkpoints")
    cl.set_defaults(fn=cmd_clean)
    a = sub.add_parser("reproduce", help="execute every notebook at one profile")
    a.add_argument("--profile", default="smoke")
    _data_args(a)
    a.add_argument("--force", action="store_true")
    a.set_defaults(fn=cmd_reproduce)
    m = sub.add_parser("readme", help="regenerate README.md's results section from the records")
    m.add_argument("--profile", default="cpu", help="the profile whose records it shows")
    m.add_argument("--check", action="store_true", help="only say whether it is up to date")
    m.set_defaults(fn=cmd_readme)
    b = sub.add_parser("bench", help="measured speedup of every compressed model vs its FLOP "
                       "reduction; fit vs bare and code-book loops",
                       description="Benchmark the papers' compressed models beside their dense "
                       "parents (reprolib.bench).", epilog=BENCH_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--profile", default="smoke", help="smoke | cpu | gpu (default smoke)")
    b.add_argument("--only", nargs="+", metavar="GROUP",
                   help="families to run: sidt vtp pe metaformer templates fit (default all)")
    b.add_argument("--variant", action="append", metavar="V",
                   help="precision[+cl][+compile], e.g. fp32, bf16+cl+compile (repeatable)")
    b.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    b.add_argument("--device", help="auto | cpu | cuda (default: the profile's)")
    b.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override one benchmark setting (repeatable)")
    b.add_argument("--force", action="store_true", help="re-measure families that have records")
    b.set_defaults(fn=cmd_bench)
    e = sub.add_parser("export", help="a saved compressed model to ONNX (written beside it), "
                                      "checked with ONNX Runtime and torch.export")
    e.add_argument("path", help="a model written by reprolib.save_compressed (stem, .json or "
                                ".safetensors)")
    e.add_argument("--format", default="onnx", help="export format (onnx)")
    e.add_argument("--input-size", type=_size, default=None, metavar="C,H,W",
                   help="one image's shape (default: the size the model was built for)")
    e.add_argument("--opset", type=int, default=18, help="ONNX opset (17 up to what the installed torch.onnx supports, see "
                        "reprolib.export.opset_range; default 18)")
    e.set_defaults(fn=cmd_export)
    return ap


def _on_sigterm(signum, frame):
    raise Terminated()


def _error(text: str) -> None:
    print(f"reprolib: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return _main(args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old)


def _main(args) -> int:
    resume = "finished stages are kept and the next run reuses them (a killed stage resumes " \
             "from its checkpoint)"
    try:
        return args.fn(args)
    except ReprolibError as e:
        _error(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _error(f"interrupted; {resume}")
        return 130
    except Terminated:
        _error(f"terminated (SIGTERM); {resume}")
        return 143
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO):
            where = paths.rel(e.filename) if e.filename else "a file"
            _error(f"error: cannot write {where}: {e.strerror}; nothing written was replaced "
                   "(every file is written atomically): free some space and run again")
            return 1
        raise
    except Exception as e:  # papermill's PapermillExecutionError, nbclient's DeadKernelError
        name = type(e).__name__
        if name == "PapermillExecutionError":
            if e.ename == "ReprolibError":
                _error(f"error: {e.evalue}")
                return 2
            _error(f"the notebook failed in cell {e.exec_count}: {e.ename}: {e.evalue}")
            return 1
        if isinstance(e, KernelDied):
            _error(f"{e}: out of memory, or killed? {resume}")
            return 1
        raise



if __name__ == "__main__":
    sys.exit(main())
