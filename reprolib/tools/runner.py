"""Checking a run request and running a paper's notebook: what ``reprolib run``, ``compute``
and ``reproduce`` do before and around the work.

:func:`check_run` checks everything it can before any work (the config: unknown keys,
types, ranges, whole grids, builder arguments; the device; the output path; writable
results / figures / runs folders with space left; the data -- present and readable, or
fetched now where that is allowed).  :func:`run_notebook` executes ``notebooks/PAPER.ipynb``
with papermill (parameters ``profile``, ``overrides``, ``force``, as JSON only:
:func:`notebook_parameters`) into ``runs/PAPER-PROFILE.ipynb``, leaving no partial notebook
behind when it fails or is killed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from reprolib import paths
from reprolib.errors import ReprolibError

#: Below this many free bytes on the results / figures / runs disk a run does not start.
MIN_FREE_BYTES = 64 * 2**20


class KernelDied(RuntimeError):
    """The notebook's kernel process ended in the middle of a run."""


def notebook_path(paper: str) -> Path:
    """``notebooks/<paper>.ipynb``, or the notebook a pipeline registered from outside the
    package names (``Pipeline.notebook``)."""
    import sys

    engine = sys.modules.get("reprolib.core.pipeline")      # loaded: a pipeline may be there
    pipe = engine.registered().get(paper) if engine is not None else None
    return pipe.notebook() if pipe is not None else paths.ROOT / "notebooks" / f"{paper}.ipynb"


def datasets_of(cfg) -> list[str]:
    """The data sets a config reads: ``dataset`` and, where the paper has them, its
    ``extra_datasets``."""
    return [cfg.dataset, *getattr(cfg, "extra_datasets", ())]


def check_run(paper: str, profile: str, overrides: dict, *, output: str | None = None,
              data_root: str | None = None, download: bool = False, data: bool = True):
    """Check a run request before any work; returns the resolved config.

    Config values (:func:`reprolib.configs.get_config`), the device (an explicit ``cuda``
    needs one), the notebook, ``output`` (a notebook file in a writable folder), writable
    results / figures / runs folders with free space, and -- when ``data`` -- every data set
    the config reads (:func:`reprolib.data.prepare_data`: present, or downloaded now where
    allowed).  ``data_root`` is the ``--data-root`` flag (the same as ``-p data_root=``).
    Raises ``ReprolibError``; writes nothing but an allowed download.
    """
    from reprolib.configs import check_builders, get_config

    flag = "--data-root" if data_root is not None else "-p data_root="
    if data_root is not None:
        if overrides.get("data_root") not in (None, data_root):
            raise ReprolibError(f"--data-root {data_root} and -p data_root="
                                f"{overrides['data_root']} disagree; give one")
        overrides = {**overrides, "data_root": data_root}
    cfg = get_config(paper, profile, **overrides)
    if data and overrides.get("data_root") is not None:
        check_root_is_read(cfg, paper, profile, flag)
    notebook_parameters(profile, overrides, False)     # what the notebook would receive
    check_builders(cfg)                  # builder arguments: known keys, typed, buildable
    if not notebook_path(paper).exists():
        raise ReprolibError(f"notebook {paths.rel(notebook_path(paper))} is missing")
    if cfg.device not in ("auto", "cpu"):
        from reprolib.core.device import resolve_device

        resolve_device(cfg.device)          # "cuda" without CUDA: one clear error
    if output is not None:
        check_output(output)
    for what, folder, var in (("results", paths.results_root(), "REPROLIB_RESULTS"),
                              ("figures", paths.figures_root(), "REPROLIB_FIGURES"),
                              ("runs", paths.runs_root(), "REPROLIB_RUNS")):
        check_writable(folder, f"the {what} folder", var)
    if data:
        from reprolib.data import prepare_data

        for ds in datasets_of(cfg):
            prepare_data(ds, cfg.data_root, download=download)
    return cfg


def _reads_root(dataset: str) -> bool:
    """Whether a run of ``dataset`` reads the data root: not the embedded digits nor an
    ``.npz`` named by path, and ``cifar10_subset`` only when it has to be built from CIFAR-10
    (a copy is found otherwise: beside the project, ``$REPROLIB_CIFAR10_SUBSET``, ``data/``)."""
    from reprolib.data import is_present

    if dataset == "digits" or dataset.startswith("npz:"):
        return False
    if dataset == "cifar10_subset":
        return not is_present(dataset)
    return True


def _read_instead(dataset: str) -> str:
    """Where ``dataset`` is read from when the data root is not (:func:`_reads_root`)."""
    if dataset == "digits":
        return "digits (bundled with scikit-learn)"
    if dataset.startswith("npz:"):
        return f"{dataset[4:]} (-p dataset=npz:PATH)"
    from reprolib.data import cifar10_subset_file

    f = cifar10_subset_file(build=False).resolve()
    near = f.is_relative_to(paths.ROOT.resolve().parent)     # the project, or beside it
    return f"cifar10_subset from {os.path.relpath(f, paths.ROOT) if near else f}"


def check_root_is_read(cfg, paper: str, profile: str, flag: str = "--data-root") -> str | None:
    """A data root given to a run whose data sets do not read it (the embedded digits, an
    ``.npz`` by path, a ``cifar10_subset`` that is already there): an error when the folder
    does not exist (the same mistake a profile that reads it would stop at), a warning line
    on stderr naming what is read instead otherwise (returned too).  Nothing when some data
    set of the run reads it."""
    import sys

    sets = datasets_of(cfg)
    if any(_reads_root(ds) for ds in sets):
        return None
    root = paths.resolve(cfg.data_root)
    instead = "; ".join(_read_instead(ds) for ds in sets)
    said = f"{flag} {cfg.data_root}" if flag == "--data-root" else f"{flag}{cfg.data_root}"
    unread = f"{paper} --profile {profile} reads no data root: it reads {instead}"
    if not root.is_dir():
        raise ReprolibError(f"{said}: {root} is not a folder, and {unread}; drop {flag}")
    note = f"{said} is not read: {unread}"
    print(f"reprolib: warning: {note}", file=sys.stderr, flush=True)
    return note


def notebook_parameters(profile: str, overrides: dict, force: bool) -> dict:
    """The papermill parameters of a run: JSON data only (:func:`reprolib.configs.json_safe`:
    tuples as lists, nothing papermill would write as raw text), which the notebook's
    ``configs.get_config(paper, profile, **overrides)`` turns back into the same typed config
    ``compute`` builds from ``overrides``."""
    from reprolib.configs import json_safe

    return {"profile": profile, "overrides": json_safe(dict(overrides), "overrides"),
            "force": bool(force)}


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def check_writable(folder: Path, what: str, var: str | None = None) -> None:
    """``folder`` (or the nearest existing folder above it, where it will be created) must
    be a writable folder on a disk with at least :data:`MIN_FREE_BYTES` free."""
    folder = Path(folder)
    base = _existing_ancestor(folder)
    hint = f"; set {var} to another folder" if var else ""
    if not base.is_dir():
        raise ReprolibError(f"{what} {folder} cannot be created: {base} is a file{hint}")
    if not os.access(base, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only(base) else "no write permission"
        raise ReprolibError(f"{what} {folder} is not writable ({why} at {base}){hint}")
    usage = shutil.disk_usage(base)
    if usage.total == 0:                      # /proc, /sys: no file can be created there
        raise ReprolibError(f"{what} {folder} cannot be created: {base} is on a virtual file "
                            f"system that holds no files{hint}")
    free = usage.free
    if free < MIN_FREE_BYTES:
        raise ReprolibError(f"{what} {folder}: the disk is full ({free / 2**20:.0f} MiB free, "
                            f"a run needs at least {MIN_FREE_BYTES // 2**20} MiB){hint}")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def check_output(output: str) -> Path:
    """``--output``: a ``.ipynb`` file path (not a folder) whose folder can be written."""
    out = paths.resolve(output)
    if out.is_dir() or str(output).endswith(os.sep):
        raise ReprolibError(f"--output {output} is a folder; give the executed notebook's file "
                            "name, e.g. runs/sidt-cpu.ipynb")
    if out.suffix != ".ipynb":
        raise ReprolibError(f"--output {output} must end in .ipynb (it is a notebook)")
    check_writable(out.parent, f"--output folder", None)
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(folder: Path) -> list[Path]:
    """Remove the partial notebooks (``.NAME.<pid>.partial.ipynb``) of runs whose process is
    gone (killed with SIGKILL, a machine that went down); returns what was removed."""
    gone = []
    for p in [*Path(folder).glob(".*.partial.ipynb"), *Path(folder).glob(".*.kernel.log")]:
        m = re.match(r"\..*\.(\d+)\.(partial\.ipynb|kernel\.log)$", p.name)
        if m and not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def _ipc_kernel_manager(log: Path | None = None):
    """A Jupyter kernel manager on IPC (unix socket) transport: local, and without the
    "Kernel is running over TCP without encryption" warning of every TCP kernel.  With
    ``log``, the kernel process's own stdout / stderr go to that file instead of this
    terminal (what a notebook prints is in its cells either way; the kernel's own messages
    -- "KeyboardInterrupt caught in kernel" when it is shut down, "Parent appears to have
    exited" -- are noise there)."""
    from jupyter_client.manager import AsyncKernelManager

    # the async manager: nbclient then polls the kernel while a cell runs, and a kernel that
    # dies is reported (with the blocking manager the run waits for it forever)
    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            if "ip" not in kw:
                # the sockets go to a private folder removed with this manager (or at exit),
                # not `kernel-ipc-N` files in the notebook's folder that a killed run leaves
                import tempfile
                import weakref

                folder = tempfile.mkdtemp(prefix="reprolib-kernel-")
                kw["ip"] = os.path.join(folder, "ipc")
                weakref.finalize(self, shutil.rmtree, folder, True)
            super().__init__(**kw)

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            if log is None:
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            with open(log, "ab") as f:                 # the kernel keeps its own copy
                kw.setdefault("stdout", f)
                kw.setdefault("stderr", f)
                return await super()._async_launch_kernel(kernel_cmd, **kw)

    return IPCKernelManager


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:160] if lines else ""


def run_notebook(paper: str, profile: str = "smoke", overrides: dict | None = None,
                 force: bool = False, output: str | None = None, *, checked: bool = False,
                 data_root: str | None = None, download: bool = False) -> Path:
    """Execute ``notebooks/PAPER.ipynb`` at ``profile``; returns the executed notebook's path.

    ``checked``: the request was already checked (:func:`check_run`)."""
    overrides = dict(overrides or {})
    if data_root is not None:
        overrides["data_root"] = data_root
    if not checked:
        check_run(paper, profile, overrides, output=output, download=download)
    import papermill as pm

    out = paths.resolve(output) if output else paths.runs_root() / f"{paper}-{profile}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_partials(out.parent)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.partial.ipynb")
    log = out.with_name(f".{out.stem}.{os.getpid()}.kernel.log")
    t0 = time.perf_counter()
    # The kernel inherits this: fit's per-epoch bars stay out of the executed notebook, while
    # papermill's own bar shows progress over the cells here (off under CI / nbval, as
    # reprolib.train.show_progress decides for fit's bars).
    os.environ.setdefault("REPROLIB_NO_PROGRESS", "1")
    bar = not any(os.environ.get(v) for v in ("CI", "NBVAL"))
    # papermill's logger repeats what the one-line messages of main() say, as log records
    # ("Kernel died while waiting for execute reply."): keep it quiet during the run
    pm_log = logging.getLogger("papermill")
    level = pm_log.level
    pm_log.setLevel(logging.CRITICAL)
    try:
        pm.execute_notebook(str(notebook_path(paper)), str(tmp),
                            parameters=notebook_parameters(profile, overrides, force),
                            cwd=str(paths.ROOT / "notebooks"), kernel_name="python3",
                            progress_bar=bar, log_output=False,
                            kernel_manager_class=_ipc_kernel_manager(log))
        os.replace(tmp, out)
    except Exception as e:
        if type(e).__name__ == "DeadKernelError":
            last = _last_line(log)
            raise KernelDied(f"{paper}: the notebook's kernel died"
                             + (f" (its last words: {last})" if last else "")) from None
        raise
    finally:
        pm_log.setLevel(level)
        tmp.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
    print(f"{paper} [{profile}] done in {time.perf_counter() - t0:.0f} s -> {paths.rel(out)}")
    return out
