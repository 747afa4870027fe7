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
_LAZY = {"create_model": "reprolib.registry", "list_models": "reprolib.registry",
         "register_model": "reprolib.registry", "save_compressed": "reprolib.compressed",
         "load_compressed": "reprolib.compressed"}
_SUBMODULES = ("compressed", "configs", "data", "device", "errors", "experiments", "io",
               "measure", "methods", "models", "paths", "registry", "report", "results", "train")

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


class _TorchvisionCompat(importlib.abc.MetaPathFinder):
    """Runs ``reprolib._compat`` just before the first ``import torchvision`` (timm imports it
    too), and lets it finish once torchvision has loaded; see that module for why.  Removes
    itself after that one import."""

    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        compat = importlib.import_module("reprolib._compat")   # defines the fallback ops
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
