"""Command line: ``reprolib COMMAND`` (also ``python -m reprolib``); ``reprolib --help`` lists
every command (its description is built from the registered subcommands).

    reprolib list [PAPER] [--all]                   papers, profiles, models and data sets; with
                                                    PAPER every override key, its type, value
                                                    per profile and meaning; --all adds the
                                                    test models
    reprolib run sidt --profile cpu -p finetune.epochs=3 [--force]
    reprolib run sidt --help                        the options above and sidt's keys
    reprolib compute pe --profile paper --data-root /imagenet   the pipeline, no notebook
    reprolib graph sidt --profile evidence          stages, edges, done or missing, resources
    reprolib plan pe --profile paper --nproc 8      what would run, beside the paper's values
    torchrun --nproc_per_node=8 -m reprolib compute pe --profile paper --data-root /imagenet
    reprolib clean sidt --profile evidence [--yes]  records no stage of the profile names
    reprolib reproduce --profile smoke              every notebook at one profile
    reprolib readme [--check]                       regenerate README.md's results section
    reprolib bench --profile cpu [--only sidt vtp]  measured speedup vs FLOP reduction
    reprolib export runs/swin_p40 --format onnx     a saved compressed model -> runs/swin_p40.onnx
    reprolib launch sidt --profile evidence --on slurm|local [--jobs N] [--dry-run]
                                                    the stages without a record, as SLURM
                                                    jobs (arrays, afterok) or a local pool
    reprolib status sidt --profile evidence         each stage: done / queued / running /
                                                    failed / cancelled / missing, job, log

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
import logging
import os
import signal
import sys
import textwrap
import threading
import time

from reprolib import paths
from reprolib.configs import parse_overrides
from reprolib.errors import ReprolibError
from reprolib.tools.launch.commands import add_commands as add_launch_commands
from reprolib.tools.launch.commands import add_launch_options
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
    known = papers()
    # the columns are as wide as their longest entry (five profiles fit)
    name_w = max(len(n) for n in known) + 2
    prof_w = max(len(", ".join(p.presets)) for p in known.values()) + 2
    for head, notebook in (("papers (notebooks) and their profiles:", True),
                           ("tools with a config of their own and their profiles:", False)):
        print(head)
        for name, p in known.items():
            if p.notebook == notebook:
                print(f"  {name:{name_w}s}{', '.join(p.presets):{prof_w}s}{p.title}")
    models = list_models(include_test=args.all)
    hidden = len(list_models()) - len(models)
    print("models" + (f" ({hidden} test models left out: reprolib list --all):" if hidden
                      else ":"))
    print(textwrap.fill(", ".join(models), width=96, initial_indent="  ",
                        subsequent_indent="  ", break_on_hyphens=False))
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
    if args.on:             # the stages first, on SLURM or a local pool; then the notebooks
        from reprolib.tools.launch.commands import reproduce_on

        code = reproduce_on(args, todo)
        if code is not None:
            return code
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


def _notebook_papers() -> list[str]:
    """The papers with a notebook, in notebook order, from the config registry (no torch)."""
    from reprolib.experiments import names

    return names()


def _profile_names() -> list[str]:
    """Every profile some paper has, in the order the configs declare them."""
    from reprolib.configs import papers

    known = [list(paper.presets) for paper in papers().values()]
    names = dict.fromkeys(p for presets in known for p in presets)
    # a profile after every one that precedes it in some paper: smoke, cpu, evidence, gpu, paper
    return sorted(names, key=lambda n: max(ps.index(n) for ps in known if n in ps))


def _paper_help(what: str = "the paper", tools: bool = False) -> str:
    """The papers (and with ``tools`` the tools with a graph of their own, ``bench``) a
    command takes, from the config registry."""
    from reprolib.configs import papers

    extra = [n for n, p in papers().items() if not p.notebook] if tools else []
    return (f"{what}: {', '.join(_notebook_papers())}"
            + (f"; or a tool: {', '.join(extra)}" if extra else "") + " (reprolib list)")


def _profile_help(default: str = "smoke") -> str:
    return (f"preset (default {default}): {', '.join(_profile_names())}; evidence is the "
            "claims test (3-5 seeds); reprolib list PAPER shows the ones a paper has")


def _param_arg(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. finetune.epochs=3 (repeatable; "
                        "reprolib list PAPER shows every key)" + what)


def _paper_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--help", action=_PaperHelp,
                   help="show this help and, after PAPER, every override key of that paper")
    p.add_argument("paper", help=_paper_help("the notebook"))
    p.add_argument("--profile", default="smoke", help=_profile_help())
    _param_arg(p)
    _data_args(p)
    p.add_argument("--force", action="store_true", help="recompute runs that have records")


def _size(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not C,H,W (e.g. 3,32,32)") from None


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="folder holding the torchvision data sets (CIFAR, Flowers-102), "
                        "ImageNet's train/ and val/ or COCO (default data/; same as -p "
                        "data_root=DIR); a root the profile does not read is an error when "
                        "it does not exist, a warning naming the data read instead otherwise")
    p.add_argument("--download", action="store_true",
                   help="download a missing data set into --data-root (into data/ it is "
                        "downloaded without asking)")


def describe_commands(sub) -> str:
    """``reprolib --help``'s description, naming every registered subcommand (whatever was
    added to ``sub``, so a new command is named without editing this); the list below it,
    one line per command, is argparse's."""
    names = list(sub.choices)
    return ("Notebook-first reproductions of five papers on compressing vision models. "
            f"Commands: {', '.join(names)} (reprolib COMMAND --help for each).")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reprolib", epilog="every override key of a paper: reprolib list PAPER "
                                        "(or reprolib run PAPER --help)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", help="papers, profiles, models and data sets; with PAPER "
                                     "every override key of that paper")
    ls.add_argument("paper", nargs="?", help="show every override key of this paper")
    ls.add_argument("--all", action="store_true",
                    help="also list the tiny test models (test_*, *_test*)")
    ls.set_defaults(fn=cmd_list)
    r = sub.add_parser("run", help="execute one paper's notebook with papermill", add_help=False)
    _paper_args(r)
    r.add_argument("--output", metavar="PATH.ipynb",
                   help="executed notebook path (default runs/PAPER-PROFILE.ipynb)")
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
    gr.add_argument("paper", help=_paper_help(tools=True))
    gr.add_argument("--profile", default="smoke", help=_profile_help())
    _param_arg(gr)
    gr.add_argument("--json", action="store_true", help="the graph as JSON")
    gr.set_defaults(fn=cmd_graph)
    pl = sub.add_parser("plan", help="what a profile would run, per stage, beside the paper's "
                        "values (nothing is trained or read)")
    pl.add_argument("paper", help=_paper_help(tools=True))
    pl.add_argument("--profile", default="smoke", help=_profile_help())
    pl.add_argument("--nproc", type=int, default=1, help="processes under torchrun (default 1)")
    _param_arg(pl)
    pl.add_argument("--json", action="store_true", help="the plan as JSON")
    pl.add_argument("--brief", action="store_true", help="five lines per stage")
    pl.set_defaults(fn=cmd_plan)
    cl = sub.add_parser("clean", help="list (with --yes remove) a profile's records that its "
                        "stages no longer name (left by an earlier config)")
    cl.add_argument("paper", help=_paper_help())
    cl.add_argument("--profile", default="smoke",
                    help=_profile_help() + "; the records of results/PAPER/PROFILE/ are listed")
    _param_arg(cl, "; the config whose records are kept")
    cl.add_argument("--yes", action="store_true", help="remove them and their checkpoints")
    cl.set_defaults(fn=cmd_clean)
    a = sub.add_parser("reproduce", help="execute every notebook at one profile")
    a.add_argument("--profile", default="smoke",
                   help=_profile_help() + "; notebooks without it are skipped")
    _data_args(a)
    a.add_argument("--force", action="store_true",
                   help="recompute every stage, even those that have records")
    add_launch_options(a, required=False)
    a.set_defaults(fn=cmd_reproduce)
    m = sub.add_parser("readme", help="regenerate README.md's results section from the records")
    m.add_argument("--profile", default="cpu", help="the profile whose records it shows "
                                                    "(default cpu; evidence is shown beside it)")
    m.add_argument("--check", action="store_true",
                   help="only say whether it is up to date (exit 1 when not)")
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
                   help="precision[+cl][+compile], or fp32+ort (ONNX Runtime), e.g. fp32, "
                        "bf16+cl+compile, fp32+ort (repeatable)")
    b.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    b.add_argument("--device", help="auto | cpu | cuda (default: the profile's)")
    b.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override one benchmark setting (repeatable; reprolib list bench)")
    b.add_argument("--force", action="store_true", help="re-measure families that have records")
    b.set_defaults(fn=cmd_bench)
    e = sub.add_parser("export", help="a saved compressed model to ONNX (written beside it), "
                                      "checked with ONNX Runtime and torch.export")
    e.add_argument("path", help="a model written by reprolib.save_compressed (stem, .json or "
                                ".safetensors)")
    e.add_argument("--format", default="onnx", help="export format (onnx)")
    e.add_argument("--input-size", type=_size, default=None, metavar="C,H,W",
                   help="one image's shape (default: the size the model was built for)")
    e.add_argument("--opset", type=int, default=18, help="ONNX opset (17 up to what the "
                   "installed torch.onnx supports, see reprolib.export.opset_range; default 18)")
    e.set_defaults(fn=cmd_export)
    add_launch_commands(sub)            # launch, status
    # (further commands are added above this line; the description lists them all)
    ap.description = describe_commands(sub)
    return ap


def _on_sigterm(signum, frame):
    raise Terminated()


def _error(text: str) -> None:
    print(f"reprolib: {text}", file=sys.stderr, flush=True)


#: Exit status after the reader of stdout went away (``reprolib run sidt --help | head``): that
#: of a process ended by SIGPIPE, as ``cat`` or ``ls`` would report.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        main_thread = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
        try:
            return _main(args)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, old)
    except BrokenPipeError:
        return _broken_pipe()


def _broken_pipe() -> int:
    """stdout's reader closed the pipe: stop quietly.  What is still buffered goes to
    /dev/null, so that the interpreter's own flush at exit raises nothing either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced (a test's capture)
        pass
    return EXIT_BROKEN_PIPE


def _quiet_exit() -> None:
    """The run was cut short and this process is about to exit: the notebook client's cell task,
    orphaned by the interruption, may still be collected before exit, and asyncio would then log
    "Task exception was never retrieved" with a traceback under the one line main() prints.
    Nothing in it is news (the kernel was stopped on purpose, or died, as the line says)."""
    logging.getLogger("asyncio").disabled = True


def _main(args) -> int:
    resume = "finished stages are kept and the next run reuses them (a killed stage resumes " \
             "from its checkpoint)"
    try:
        return args.fn(args)
    except ReprolibError as e:
        _error(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _quiet_exit()
        _error(f"interrupted; {resume}")
        return 130
    except Terminated:
        _quiet_exit()
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
            _quiet_exit()
            _error(f"{e}: out of memory, or killed? {resume}")
            return 1
        raise



if __name__ == "__main__":
    sys.exit(main())
