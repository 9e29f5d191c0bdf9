"""Shoestring: from raw data to paying customers on the least compute money.

The Python API mirrors the CLI; every command is a function::

    from shoestring import train, resolve_config
    result = train(resolve_config({"data": {"source": "digits"}}))
    result.summary["test_accuracy"]

Imports are lazy, so ``import shoestring`` costs almost nothing.
"""

from __future__ import annotations

from typing import Any

from shoestring.version import __version__ as __version__

_EXPORTS = {
    "train": "shoestring.train.api",
    "RunResult": "shoestring.train.api",
    "TrainHooks": "shoestring.train.hooks",
    "TrainConfig": "shoestring.train.config",
    "resolve_config": "shoestring.train.config",
    "evaluate_run": "shoestring.train.evaluate_run",
    "list_runs": "shoestring.ledger.queries",
    "quickstart": "shoestring.quickstart",
    "load_dataset": "shoestring.data.sources",
    "load_run": "shoestring.models.run_folder",
    "save_run": "shoestring.models.run_folder",
    "ModelCard": "shoestring.models.card",
    "load_model": "shoestring.models.run_folder",  # deprecated: load_run
    "ShoestringError": "shoestring.errors",
    "AuditConfig": "shoestring.audit.config",
}

__all__ = sorted([*_EXPORTS, "audit"])


def __getattr__(name: str) -> Any:
    if name == "audit":  # the subpackage, callable: shoestring.audit(config)
        import importlib

        return importlib.import_module("shoestring.audit")
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'shoestring' has no attribute {name!r}")
