"""Model definitions, one architecture family a module.  Each module registers its builders
with ``@register_model`` (``reprolib.create_model``); the registry finds them in the source
(``reprolib.core.plugins``) and imports a module when one of its models is asked for, so
importing this package imports none of them."""
