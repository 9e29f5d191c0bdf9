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
from shoestring.data.prepare.pipeline import PrepareResult, prepare
from shoestring.data.prepare.report import load_report, render_report

__all__ = ["LeakageConfig", "PrepareConfig", "PrepareResult", "load_report", "prepare",
           "render_report", "resolve_leakage_config", "resolve_prepare_config"]
