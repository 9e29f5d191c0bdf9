"""The model card: the typed ``model.json`` of a run folder.

Everything needed to rebuild a trained module and feed it raw inputs, without
the training code or the data: the architecture, the task, the input and
output shapes, the preprocessing (features, and regression targets), the
class and feature names, the tokenizer and its id layout, where the data came
from, which run this one was made from (``lineage``) and the transforms
(quantization, pruning, adapters…) applied between building the module and
loading its weights.

Format ``shoestring.model/2``; a release-0.1 card (``shoestring.model/1``) is
read through :func:`card_from_v1`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shoestring.config import problems_of
from shoestring.errors import ShoestringError
from shoestring.types import Preprocessing, Task

FORMAT = "shoestring.model/2"
FORMAT_V1 = "shoestring.model/1"


class _Part(BaseModel):
    # A misspelt key in a card is an error, not a silently dropped setting.
    model_config = ConfigDict(extra="forbid")


class Architecture(_Part):
    """What :func:`shoestring.models.registry.build_model` rebuilds the module from."""

    family: str = Field(description="mlp, cnn, gpt, encoder…")
    name: str | None = Field(None, description="the model name it was built as (seed-mlp…)")
    params: dict[str, Any] = Field(description="the family builder's keyword arguments")


class Inputs(_Part):
    shape: list[int] = Field(description="one example's shape, batch dimension left out")
    dtype: Literal["float32", "int64"] = Field(
        "float32", description="float32 features, or int64 token ids")


class Outputs(_Part):
    kind: Literal["softmax", "identity", "logits"] = Field(
        description="softmax: class scores; identity: regression values; logits: next tokens")
    size: int = Field(ge=1, description="classes, regression targets or vocabulary size")


class PreprocessingCard(_Part):
    """``x → (x·scale − mean) / std`` per flattened feature; regression targets are
    predicted standardized when ``target_mean``/``target_std`` are set
    (``y = ŷ·target_std + target_mean``)."""

    scale: float = 1.0
    mean: list[float] | None = None
    std: list[float] | None = None
    target_mean: list[float] | None = None
    target_std: list[float] | None = None

    def to_preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.model_dump())

    @classmethod
    def of(cls, pre: Preprocessing) -> PreprocessingCard:
        return cls.model_validate(pre.to_dict())


class TextLayout(_Part):
    """How token ids are laid out: ``plain`` (a language model's ids as the tokenizer gives
    them) or ``cls-pad`` (``[CLS] t+offset … [PAD]…``, a classifier's input). A masked
    language model also has a ``[MASK]`` id (``mask_id``)."""

    kind: Literal["plain", "cls-pad"] = "plain"
    pad_id: int | None = None
    cls_id: int | None = None
    offset: int = 0
    mask_id: int | None = None


class TokenizerCard(_Part):
    """The run's tokenizer (saved beside the card by ``save_run``)."""

    kind: str | None = Field(None, description="char, byte or bpe")
    vocab_size: int | None = Field(None, description="the tokenizer's own ids")
    layout: TextLayout = Field(default_factory=TextLayout)


class DataCard(_Part):
    """Where the examples came from, and how to read that source again (for ``eval``)."""

    source: str | None = Field(None, description="the data spec trained on")
    label: str | None = Field(None, description="the column or field holding the label")
    text_field: str | None = Field(None, description="JSONL field holding the text")
    corpus: dict[str, Any] | None = Field(None, description="a text corpus's tokens and hash")


class Lineage(_Part):
    """Which run this model was made from, and by which stage."""

    stage: str = Field("train", description="train, finetune, compress, distill, audit…")
    parent_run: str | None = Field(None, description="the parent run's ledger id")
    parent_dir: str | None = Field(None, description="the parent run folder")


class TransformRecord(_Part):
    """A transform applied to the freshly built module before its weights load."""

    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    version: int = Field(1, ge=1)


class ModelCard(_Part):
    format: Literal["shoestring.model/2"] = FORMAT
    architecture: Architecture
    task: Task
    inputs: Inputs
    outputs: Outputs
    preprocessing: PreprocessingCard = Field(default_factory=PreprocessingCard)
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    tokenizer: TokenizerCard | None = None
    data: DataCard = Field(default_factory=DataCard)
    lineage: Lineage = Field(default_factory=Lineage)
    transforms: list[TransformRecord] = Field(default_factory=list)
    shoestring_version: str | None = None

    @property
    def family(self) -> str:
        return self.architecture.family

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape)

    @property
    def takes_tokens(self) -> bool:
        return self.inputs.dtype == "int64"

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def card_from_v1(d: dict[str, Any]) -> ModelCard:
    """A release-0.1 ``model.json`` as a card (the files themselves are left as they are)."""
    arch = dict(d.get("architecture") or {})
    family = arch.get("family")
    tokens = family in ("gpt", "encoder")
    tokenizer = None
    if d.get("tokenizer"):
        corpus = d.get("corpus") or {}
        # Release 0.1 laid classifier texts out as [CLS]=1, [PAD]=0, token+2
        # (data/text_jsonl.py); language models read the tokenizer's ids as they are.
        layout = TextLayout(kind="cls-pad", pad_id=0, cls_id=1, offset=2) \
            if family == "encoder" else TextLayout()
        tokenizer = TokenizerCard(kind=corpus.get("tokenizer"), layout=layout)
    return ModelCard(
        architecture=Architecture(family=family, name=arch.get("name"),
                                  params=arch.get("params") or {}),
        task=Task(d.get("task", "classification")),
        inputs=Inputs(shape=list(d.get("input_shape") or []),
                      dtype="int64" if tokens else "float32"),
        outputs=Outputs(kind=d.get("output") or ("logits" if family == "gpt" else "softmax"),
                        size=int(d.get("num_outputs") or 1)),
        preprocessing=PreprocessingCard.model_validate(d.get("preprocessing") or {}),
        class_names=d.get("class_names"), feature_names=d.get("feature_names"),
        tokenizer=tokenizer, data=DataCard(source=d.get("data"), corpus=d.get("corpus")),
        shoestring_version="0.1")


def card_from_json(d: Any, where: str) -> ModelCard:
    """Validate a decoded ``model.json`` of either format into a card."""
    if not isinstance(d, dict):
        raise ShoestringError(f"'{where}' is not a model card (a JSON object)",
                              hint="the file is damaged; retrain or restore it")
    fmt = d.get("format")
    try:
        if fmt == FORMAT_V1:
            return card_from_v1(d)
        if fmt == FORMAT:
            return ModelCard.model_validate(d)
    except ValidationError as exc:
        raise ShoestringError(f"'{where}' is not a valid model card: "
                              f"{'; '.join(problems_of(exc, ModelCard))}",
                              hint="the file is damaged; retrain or restore it") from None
    raise ShoestringError(f"'{where}' has format {fmt!r}, expected {FORMAT!r}",
                          hint="it was written by an incompatible (newer?) Shoestring; "
                          "upgrade Shoestring to read it")
