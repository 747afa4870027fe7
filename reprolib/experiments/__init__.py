"""One pipeline per notebook ("paper"), each a :class:`reprolib.core.pipeline.Pipeline` that
declares its stage graph; every module keeps only what is that paper's own.

Every paper module exposes the same entry points (its pipeline's methods):

    stages(cfg)            the graph's stages, in run order (nothing runs)
    run(cfg, force=False)  every stage, each a cached record; returns {stage name: record}
    tables(cfg)            pandas DataFrames read back from the results store (attrs["caption"])
    figures(cfg)           matplotlib figures built from the same records
    summary(cfg)           Markdown sentences about the results, numbers from the records
    claims(cfg)            the claims table of an evidence run (empty, saying why, otherwise)

    from reprolib.configs import get_config
    from reprolib.experiments import get_experiment
    exp = get_experiment("sidt")                     # the sidt Pipeline
    cfg = get_config("sidt", "smoke")
    exp.run(cfg); exp.tables(cfg)["table1"]

The papers are the configs registered in :mod:`reprolib.configs`; a paper's pipeline is the
module ``reprolib.experiments.<paper>`` (its ``PIPELINE``) or one registered with
:func:`reprolib.core.pipeline.register_pipeline` (a paper defined outside the package).
"""

from __future__ import annotations

import importlib
import pkgutil

from reprolib.errors import ReprolibError, choose

#: Shared helpers of the papers' modules, not papers themselves.
HELPERS = ("evidence",)


def names() -> list[str]:
    """Every paper (registered config), in notebook order (``reprolib reproduce``, the README):
    the configs' ``order``; imports no torch."""
    from reprolib.configs import papers

    return [p.name for p in sorted(papers().values(), key=lambda p: (p.order, p.name))
            if p.notebook]


def load() -> None:
    """Import every paper module of the package (each registers its pipeline)."""
    for m in pkgutil.iter_modules(__path__):
        if m.name not in HELPERS and not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")


def pipelines() -> dict:
    """Every paper's pipeline by name, in notebook order (the package's own imported)."""
    return {n: get_experiment(n) for n in names()}


def get_experiment(paper: str):
    """The :class:`~reprolib.core.pipeline.Pipeline` of ``paper``: the one registered under
    its name, else the one its module registers on import (``reprolib.experiments.<paper>``,
    or the module its config names: ``register_paper(..., pipeline=...)``)."""
    from reprolib.configs import papers
    from reprolib.core.pipeline import _PIPELINES

    known = papers()
    choose("paper", paper, [*names(), *(n for n, p in known.items() if not p.notebook)])
    if paper not in _PIPELINES:
        module = known[paper].pipeline or f"{__name__}.{paper}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
        if paper not in _PIPELINES:
            raise ReprolibError(f"paper {paper!r} has a config but no pipeline: add "
                                f"{module.replace('.', '/')}.py (its PIPELINE)")
    return _PIPELINES[paper]


def __getattr__(name: str):
    if name == "EXPERIMENTS":          # the notebooks in order (kept for scripts)
        return tuple(names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
