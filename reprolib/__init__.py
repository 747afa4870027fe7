"""reprolib: models, compression methods, data, training and measurement for five papers
on compressing vision models, driven by one notebook per paper.

    import reprolib
    model = reprolib.create_model("vgg19_cifar", template="uniform", width=0.5)
    reprolib.save_compressed(model, "runs/vgg_u05")    # architecture JSON + safetensors
    model = reprolib.load_compressed("runs/vgg_u05")

``import reprolib`` is cheap (no torch): the names above and the submodules
(``reprolib.measure``, ``reprolib.data``, ...) are imported on first use, so the command line
answers ``list``, ``--help`` and a bad value at once and imports torch only when work starts.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

from reprolib.errors import ReprolibError

__version__ = "0.1.0"

# timm -> huggingface_hub imports tqdm.auto, which warns inside Jupyter when ipywidgets is
# absent; reprolib's own bars are plain text, so the warning is noise (and leaks a path).
warnings.filterwarnings("ignore", message="IProgress not found")

#: Public names, imported from their module on first access.
_LAZY = {"create_model": "reprolib.core.registry", "list_models": "reprolib.core.registry",
         "register_model": "reprolib.core.registry",
         "save_compressed": "reprolib.core.compressed",
         "load_compressed": "reprolib.core.compressed"}

#: Where each role lives (the tree):
#:   core/         the engine: stage graph and pipelines (pipeline), records (results), files
#:                 (io), the model registry, the one compressed-model format and its ONNX
#:                 export, train, measure, device, progress, report (tables and figures)
#:   data/         data sets: loaders and sources (``reprolib.data``), augment, coco
#:   models/       architectures and their registry;   methods/   the papers' algorithms
#:   configs/      one typed config per paper;          experiments/   one pipeline per paper
#:   tools/        built on the graph: plan, bench, readme, notebook running, nbclean
#:   cli.py        the command line;   errors.py   ReprolibError and the validators
#: Stable import paths of the flat layout this package had, kept for notebooks, scripts and
#: users: ``reprolib.measure`` *is* ``reprolib.core.measure`` (the same module object).
ALIASES = {f"reprolib.{old}": f"reprolib.{new}" for old, new in {
    "results": "core.results", "io": "core.io", "compressed": "core.compressed",
    "train": "core.train", "measure": "core.measure", "device": "core.device",
    "progress": "core.progress", "report": "core.report", "registry": "core.registry",
    "augment": "data.augment", "coco": "data.coco", "plan": "tools.plan",
    "bench": "tools.bench", "export": "core.export", "nbclean": "tools.nbclean",
    "experiments.common": "core.pipeline", "experiments.readme": "tools.readme"}.items()}
_SUBMODULES = ("configs", "core", "data", "errors", "experiments", "methods", "models", "paths",
               "tools", *(a.split(".", 1)[1] for a in ALIASES if a.count(".") == 1))

__all__ = ["create_model", "list_models", "register_model", "save_compressed",
           "load_compressed", "ReprolibError", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'reprolib' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path of :data:`ALIASES` as the module it names: ``sys.modules`` then
    holds the one module object under both names (monkeypatching either patches both)."""

    def find_spec(self, name, path=None, target=None):
        if name not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        module = importlib.import_module(ALIASES[spec.name])
        spec.loader_state = module.__spec__        # importlib sets __spec__ to the alias's
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state   # the module's own spec back


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.insert(0, _Alias())


class _TorchvisionCompat(importlib.abc.MetaPathFinder):
    """Runs ``reprolib.core._compat`` just before the first ``import torchvision`` (timm imports it
    too), and lets it finish once torchvision has loaded; see that module for why.  Removes
    itself after that one import."""

    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        compat = importlib.import_module("reprolib.core._compat")   # defines the fallback ops
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not compat.ACTIVE:
            return spec
        spec.loader = _AfterExec(spec.loader, compat.after_torchvision_import)
        return spec


class _AfterExec(importlib.abc.Loader):
    """A module loader that calls ``after()`` once the module has executed."""

    def __init__(self, loader, after):
        self.loader, self.after = loader, after

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.after()

    def __getattr__(self, name):
        return getattr(self.loader, name)


if "torchvision" not in sys.modules and not any(isinstance(f, _TorchvisionCompat)
                                                 for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchvisionCompat())
