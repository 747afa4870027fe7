"""Model definitions.  Importing this package imports every module in it, so each module's
``@register_model`` builders land in the registry (``reprolib.create_model``)."""

import importlib
import pkgutil

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_m}")
