"""A table entry's heavy code, named as a "module:function" string and imported only by the layer that runs it.

The strings come from xrun's own tables (data sources, export formats), never from a user's YAML: a plain-Python
table can so name a NumPy or TensorFlow function without importing it, and `validate` stays light.
"""

from __future__ import annotations

import importlib
from functools import lru_cache


@lru_cache(maxsize=None)
def resolve(reference: str):
    """The object "package.module:name" names; an AttributeError or ImportError is a bug in a table."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
