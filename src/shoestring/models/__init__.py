"""Model families and their portable description (``model.json``).

A model is described by an *architecture* dict, ``{"family": ..., "params":
{...}}``, that is enough to rebuild it without the training code;
:func:`build_model` turns it into a ``torch.nn.Module`` and
:mod:`shoestring.models.artifact` saves and loads weights as safetensors.
"""

from shoestring.models.registry import architecture_for, build_model, model_names

__all__ = ["architecture_for", "build_model", "model_names"]
