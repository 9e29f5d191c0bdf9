"""Data preparation: validate, deduplicate, anonymize, split without leakage, pack.

>>> from shoestring.data.prepare import prepare, resolve_prepare_config
>>> result = prepare(resolve_prepare_config({"source": "jsonl:docs.jsonl",
...                                          "out": "prepared/docs"}))   # doctest: +SKIP
>>> result.report["dropped"]                                            # doctest: +SKIP
{'invalid': 3, 'exact_duplicate': 120, 'near_duplicate': 41, ...}

The prepared folder is a data source: ``shoestring train --data prepared:DIR``.
See docs/data.md.
"""

from shoestring.data.prepare.config import (
                                            LeakageConfig,
                                            PrepareConfig,
                                            resolve_leakage_config,
                                            resolve_prepare_config,
)

# The pipeline (numpy, scipy, torch) loads on first use, so that importing the
# config (e.g. to build `shoestring data --help`) stays cheap.
_LAZY = {"PrepareResult": "pipeline", "prepare": "pipeline", "load_report": "report",
         "render_report": "report"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"shoestring.data.prepare.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'shoestring.data.prepare' has no attribute {name!r}")

__all__ = ["LeakageConfig", "PrepareConfig", "PrepareResult", "load_report", "prepare",
           "render_report", "resolve_leakage_config", "resolve_prepare_config"]
