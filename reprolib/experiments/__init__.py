"""Experiment pipelines, one module per notebook, all on the engine in
:mod:`reprolib.experiments.common`.

Every module has the same entry points:

    stages(cfg)            the pipeline's cached stages, in run order (nothing runs)
    run(cfg, force=False)  every stage, each a cached record; returns {stage name: record}
    tables(cfg)            pandas DataFrames read back from the results store (attrs["caption"])
    figures(cfg)           matplotlib figures built from the same records
    summary(cfg)           Markdown sentences about the results, numbers from the records

    from reprolib.configs import get_config
    from reprolib.experiments import get_experiment
    exp = get_experiment("sidt")
    cfg = get_config("sidt", "smoke")
    exp.run(cfg); exp.tables(cfg)["table1"]
"""

from __future__ import annotations

import importlib
from types import ModuleType

from reprolib.errors import choose

#: The notebooks, in the order the README and ``reprolib reproduce`` present them.
EXPERIMENTS = ("quickstart", "sidt", "sidt_detection", "pe", "vtp_svd", "metaformer_nas",
               "templates", "overview")


def get_experiment(paper: str) -> ModuleType:
    """The pipeline module of ``paper`` (``reprolib.experiments.<paper>``)."""
    choose("paper", paper, EXPERIMENTS)
    return importlib.import_module(f"reprolib.experiments.{paper}")
