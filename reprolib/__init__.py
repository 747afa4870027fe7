"""reprolib: models, compression methods, data, training and measurement for five papers
on compressing vision models, driven by one notebook per paper.

    import reprolib
    model = reprolib.create_model("vgg19_cifar", template="uniform", width=0.5)
"""

from reprolib import _compat  # noqa: F401  (must run before anything imports torchvision)
from reprolib.errors import ReprolibError
from reprolib.registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "ReprolibError", "__version__"]
