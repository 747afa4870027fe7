"""reprolib: models, compression methods, data, training and measurement for five papers
on compressing vision models, driven by one notebook per paper.

    import reprolib
    model = reprolib.create_model("vgg19_cifar", template="uniform", width=0.5)
    reprolib.save_compressed(model, "runs/vgg_u05")    # architecture JSON + safetensors
    model = reprolib.load_compressed("runs/vgg_u05")
"""

import warnings

from reprolib import _compat  # noqa: F401  (must run before anything imports torchvision)

# timm -> huggingface_hub imports tqdm.auto, which warns inside Jupyter when ipywidgets is
# absent; reprolib's own bars are plain text, so the warning is noise (and leaks a path).
warnings.filterwarnings("ignore", message="IProgress not found")
from reprolib.compressed import load_compressed, save_compressed
from reprolib.errors import ReprolibError
from reprolib.registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "register_model", "save_compressed",
           "load_compressed", "ReprolibError", "__version__"]
