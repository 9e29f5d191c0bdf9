"""Audit: explanations, fairness across groups, mitigation, and a model card from evidence.

>>> from shoestring.audit import audit, resolve_audit_config
>>> result = audit(resolve_audit_config({"run": "runs/loans", "group": ["sex"]}))  # doctest: +SKIP
>>> result.report["fairness"]["columns"]["sex"]["gaps"]["error_rate"]              # doctest: +SKIP
{'value': 0.13, 'ci': [0.11, 0.16], 'highest': 'B', 'lowest': 'A'}

Files written into ``RUN/audit/`` are listed in :mod:`shoestring.audit.files`
and docs/audit.md. Heavy libraries (Captum, Fairlearn, matplotlib) load on use.
"""

import sys
import types

from shoestring.audit.config import AuditConfig, resolve_audit_config

_LAZY = {"audit": "api", "AuditResult": "api", "verify_card": "modelcard",
         "build_card": "modelcard"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"shoestring.audit.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'shoestring.audit' has no attribute {name!r}")


__all__ = ["AuditConfig", "AuditResult", "audit", "build_card", "resolve_audit_config",
           "verify_card"]


class _CallableModule(types.ModuleType):
    """``shoestring.audit(config)`` calls :func:`shoestring.audit.api.audit`.

    The capability and its verb share a name; once the subpackage is imported,
    ``shoestring.audit`` *is* this module, so the module itself is callable.
    """

    def __call__(self, config, **kwargs):
        from shoestring.audit.api import audit as run_audit

        return run_audit(config, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
