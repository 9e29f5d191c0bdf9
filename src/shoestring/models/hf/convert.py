"""Tensors between Hugging Face names and Shoestring names, by a family's rules.

Pure functions over named tensors: :func:`to_shoestring` checks every tensor a
Shoestring module needs against the shapes ``config.json`` implies *before*
reading any of them, and reports every missing or misshapen tensor at once;
:func:`to_hf` splits fused projections back apart.

>>> import torch
>>> from shoestring.models.hf.families import Rule
>>> rules = [Rule("qkv.weight", ("q.weight", "k.weight"), sizes=(2, 1))]
>>> hf = {"q.weight": torch.ones(2, 3), "k.weight": torch.zeros(1, 3)}
>>> state, unused = to_shoestring(rules, "", DictSource(hf), {"qkv.weight": (3, 3)})
>>> state["qkv.weight"].sum().item(), unused
(6.0, [])
>>> sorted(to_hf(rules, "", state))
['k.weight', 'q.weight']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch

from shoestring.errors import ShoestringError
from shoestring.models.hf.families import Rule

# Older BERT checkpoints (converted from TensorFlow) name LayerNorm parameters gamma/beta.
LEGACY_NAMES = ((".gamma", ".weight"), (".beta", ".bias"))
SHOWN = 6  # names listed in an error before "…and N more"


class TensorSource(Protocol):
    """Named tensors read on demand (a checkpoint's shards, or a dict in tests)."""

    def names(self) -> list[str]: ...

    def shape(self, name: str) -> tuple[int, ...]: ...

    def get(self, name: str) -> torch.Tensor: ...


class DictSource:
    """A :class:`TensorSource` over an in-memory dict."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors = dict(tensors)

    def names(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name].shape)

    def get(self, name: str) -> torch.Tensor:
        return self.tensors[name]


def _listed(items: Sequence[str]) -> str:
    more = f" …and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def canonical_names(names: Sequence[str]) -> dict[str, str]:
    """Each tensor's current name → its original name (legacy ``gamma``/``beta`` renamed)."""
    out = {}
    for name in names:
        new = name
        for old, repl in LEGACY_NAMES:
            if new.endswith(old) and "LayerNorm" in new:
                new = new[: -len(old)] + repl
        out[new] = name
    return out


def find_prefix(prefixes: Sequence[str], anchor: str, names: Sequence[str], what: str) -> str:
    """The base-model prefix under which ``anchor`` lies (``model.``, ``bert.`` or none)."""
    present = set(names)
    for prefix in prefixes:
        if prefix + anchor in present:
            return prefix
    raise ShoestringError(f"the weights hold no '{anchor}' under any of the prefixes "
                          f"{[p or '(none)' for p in prefixes]}, so they are not a {what} "
                          f"checkpoint (first tensors: {_listed(sorted(names))})",
                          hint="config.json and the weights belong to different models, or "
                          "the weights were saved by a framework whose names Shoestring "
                          "does not map")


def to_shoestring(rules: Sequence[Rule], prefix: str, source: TensorSource,
                  expected: Mapping[str, tuple[int, ...]]
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Shoestring-named tensors for every name in ``expected`` (name → shape), and the
    checkpoint's tensors that were not used (sorted).

    Rules whose Shoestring tensor the module lacks (a head it does not have) are
    skipped; their tensors count as unused. Every missing tensor and every shape
    that differs from ``expected`` is reported in one error.
    """
    names = canonical_names(source.names())
    plan: list[tuple[Rule, list[str]]] = []
    missing, wrong, covered = [], [], set()
    for rule in rules:
        if rule.ours not in expected:
            continue
        theirs = [(prefix if rule.body else "") + n for n in rule.theirs]
        covered.add(rule.ours)
        for name, shape in zip(theirs, rule.hf_shapes(tuple(expected[rule.ours]))):
            if name not in names:
                missing.append(name)
            elif source.shape(names[name]) != shape:
                wrong.append(f"{name} is {list(source.shape(names[name]))} in the weights but "
                             f"{list(shape)} by config.json")
        plan.append((rule, theirs))
    uncovered = sorted(set(expected) - covered)
    if uncovered:  # a module tensor no rule makes: a mapping bug, not bad input
        raise RuntimeError(f"no Hugging Face tensor maps to {uncovered}")
    problems = ([f"missing tensors: {_listed(missing)}"] if missing else []) + \
        ([f"shape mismatch: {_listed(wrong)}"] if wrong else [])
    if problems:
        raise ShoestringError(f"the weights do not fit the model config.json describes: "
                              f"{'; '.join(problems)}",
                              hint="config.json and the weights disagree: the folder mixes "
                              "files of two models, or a shard is missing or damaged")
    state, used = {}, set()
    for rule, theirs in plan:
        parts = [source.get(names[n]) for n in theirs]
        used.update(names[n] for n in theirs)
        if rule.transpose:
            state[rule.ours] = parts[0].t().contiguous()
        elif len(parts) > 1:
            state[rule.ours] = torch.cat(parts, dim=0)
        else:
            state[rule.ours] = parts[0]
    return state, sorted(set(source.names()) - used)


def to_hf(rules: Sequence[Rule], prefix: str, state: Mapping[str, torch.Tensor]
          ) -> dict[str, torch.Tensor]:
    """Hugging Face–named tensors for a Shoestring state dict (fused projections split)."""
    out: dict[str, torch.Tensor] = {}
    done = set()
    for rule in rules:
        if rule.ours not in state:
            continue
        t = state[rule.ours].detach()
        theirs = [(prefix if rule.body else "") + n for n in rule.theirs]
        done.add(rule.ours)
        if rule.transpose:
            out[theirs[0]] = t.t().contiguous()
        elif len(theirs) > 1:
            for name, part in zip(theirs, torch.split(t, list(rule.sizes), dim=0)):
                out[name] = part.contiguous()
        else:
            out[theirs[0]] = t.contiguous()
    left = sorted(set(state) - done)
    if left:
        raise ShoestringError(f"these tensors have no place in a Hugging Face checkpoint: "
                              f"{_listed(left)}",
                              hint="merge adapters into the weights first (train --merge), "
                              "or export the base model")
    return out
