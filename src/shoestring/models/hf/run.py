"""A Hugging Face checkpoint seen as a run folder: a model card and a loaded model.

:func:`~shoestring.models.run_folder.read_card` and
:func:`~shoestring.models.run_folder.load_run` hand a checkpoint folder here,
so every reader of run folders (``generate``, ``eval``, ``serve``, ``plan``,
``train --init-from``) takes one as it takes a run. The card is derived from
``config.json``: a decoder is a language model, a ``BertForSequenceClassification``
a classifier with the checkpoint's label names, a ``BertForMaskedLM`` a masked
language model and a bare ``BertModel`` returns its pooled vectors. Its
tokenizer is the folder's own ``tokenizer.json``, read by Hugging Face
``tokenizers`` and laid out ``plain`` (the tokenizer adds its own special
tokens, such as BERT's ``[CLS]`` … ``[SEP]`` or Llama's ``<|begin_of_text|>``).
"""

from __future__ import annotations

from pathlib import Path

from shoestring.models.card import (
    Architecture,
    DataCard,
    Inputs,
    Lineage,
    ModelCard,
    Outputs,
    TextLayout,
    TokenizerCard,
)
from shoestring.models.hf.families import Imported
from shoestring.types import Task

TOKENIZER_KIND = "hf"  # a card's tokenizer kind: the folder's tokenizer.json, as it is


def card_of(imported: Imported, path: Path) -> ModelCard:
    """The model card of checkpoint ``path`` (its ``config.json`` read as ``imported``)."""
    arch = imported.architecture
    p = arch["params"]
    if arch["family"] == "gpt" or p.get("mlm"):
        task, outputs = Task.language_modeling, Outputs(kind="logits", size=p["vocab_size"])
    elif p["num_classes"]:
        task, outputs = Task.classification, Outputs(kind="softmax", size=p["num_classes"])
    else:  # a bare BertModel: its pooled [CLS] vectors
        task, outputs = Task.regression, Outputs(kind="identity", size=p["n_embd"])
    tokenizer = None
    if (Path(path) / "tokenizer.json").is_file():
        tokenizer = TokenizerCard(kind=TOKENIZER_KIND, layout=TextLayout(
            kind="plain", pad_id=p.get("pad_id")))
    return ModelCard(
        architecture=Architecture(family=arch["family"], name=arch.get("name"), params=p),
        task=task, inputs=Inputs(shape=[p["block_size"]], dtype="int64"), outputs=outputs,
        class_names=imported.class_names, tokenizer=tokenizer, data=DataCard(),
        lineage=Lineage(stage="import", parent_dir=str(Path(path).resolve())))


def read_hf_card(path: Path) -> ModelCard:
    """The card of checkpoint ``path`` from ``config.json`` alone (no weights read)."""
    from shoestring.models.hf.folder import inspect_checkpoint

    return card_of(inspect_checkpoint(path), path)


def load_hf_run(path: Path):
    """Checkpoint ``path`` as a :class:`~shoestring.models.run_folder.LoadedRun`."""
    from shoestring.models.hf.folder import import_checkpoint
    from shoestring.models.run_folder import LoadedRun, RunFolder

    imported = import_checkpoint(path)
    return LoadedRun(imported.model, card_of(imported.imported, path), RunFolder(path))
