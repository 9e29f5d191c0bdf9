"""The data-source registry: a spec string in, a loaded :class:`Dataset` out.

A spec is ``scheme:argument`` (``idx:/data/mnist``, ``csv:table.csv``) or a bare
alias (``digits``, ``fashion-mnist``). Each scheme maps to a loader function
``(argument, options) -> Dataset``; a capability adds its own scheme with
:func:`register_source` instead of editing this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from shoestring.errors import DataError
from shoestring.types import Dataset


# The share held out for testing when a source has no test split: one default for
# `train` and `data prepare` alike.
DEFAULT_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class SourceOptions:
    """Options a loader may use; each loader ignores those that do not apply.

    Attributes:
        label: the column (``csv:``, ``parquet:``; required there) or the JSONL field
            (default ``label``) that holds what to predict.
        task: ``"classification"``, ``"regression"`` or ``None`` to infer.
        test_fraction: share of rows held out when a source has no test split.
        seed: seed of that hold-out split.
        fashion_mnist_dir: where Debian's ``dataset-fashion-mnist`` lives;
            passed in so tests can point elsewhere.
        text_field: JSONL field of the text.
        tokenizer, bpe_vocab_size, max_length: how JSONL texts become token ids.
        cache_dir: where loaders that decode slowly (IDX) keep decoded arrays
            (:mod:`shoestring.data.array_cache`); ``None`` decodes every time.
        tokenizer_file, layout: read JSONL texts with this saved tokenizer and id
            layout (a run's own for ``eval``, or a pretrained checkpoint's) instead of
            training a tokenizer on the texts.
        groups: table columns set aside as group columns (never features),
            returned per split as :attr:`TensorDataset.groups`
            (:mod:`shoestring.data.groups`).
    """

    label: str | None = None
    task: str | None = None
    test_fraction: float = DEFAULT_TEST_FRACTION
    seed: int = 0
    fashion_mnist_dir: Path = Path("/usr/share/datasets/fashion-mnist")
    text_field: str = "text"
    tokenizer: str | None = None
    bpe_vocab_size: int | None = None
    max_length: int | None = None
    cache_dir: Path | None = None
    tokenizer_file: Path | None = None
    layout: Any = None  # shoestring.models.card.TextLayout
    groups: tuple[str, ...] = ()


Loader = Callable[[str, SourceOptions], Dataset]


def _builtin_loaders() -> dict[str, Loader]:
    # Imported lazily so that `import shoestring` stays cheap.
    from shoestring.data.csv_source import load_csv
    from shoestring.data.digits import load_digits
    from shoestring.data.idx import load_fashion_mnist, load_idx_dir

    return {
        "digits": load_digits,
        "fashion-mnist": load_fashion_mnist,
        "idx": load_idx_dir,
        "csv": load_csv,
    }


_EXTRA: dict[str, Loader] = {}


def register_source(scheme: str, loader: Loader) -> None:
    """Make ``scheme:ARG`` specs load through ``loader``."""
    _EXTRA[scheme] = loader


def _loaders() -> dict[str, Loader]:
    loaders = _builtin_loaders()
    loaders.update(_EXTRA)
    for module in ("shoestring.data.prepared", "shoestring.data.text"):
        # Optional schemes from other capabilities; absent modules are fine.
        try:
            mod = __import__(module, fromlist=["LOADERS"])
        except ModuleNotFoundError:
            continue
        loaders.update(getattr(mod, "LOADERS", {}))
    return loaders


def source_names() -> list[str]:
    """Every scheme or alias a spec may start with."""
    return sorted(_loaders())


def split_spec(spec: str) -> tuple[str, str]:
    """``"csv:a.csv"`` → ``("csv", "a.csv")``; ``"digits"`` → ``("digits", "")``."""
    spec = spec.strip()
    scheme, sep, arg = spec.partition(":")
    if not sep:
        return spec, ""
    return scheme, arg


def prepared_folder(spec: str | None) -> Path | None:
    """The folder of a ``prepared:DIR[#split]`` spec (as written, not resolved), or None
    for any other spec."""
    if not spec:
        return None
    scheme, arg = split_spec(spec)
    return Path(arg.partition("#")[0]) if scheme == "prepared" and arg else None


def load_dataset(spec: str, options: SourceOptions | None = None) -> Dataset:
    """Load the data source named by ``spec``.

    >>> ds = load_dataset("digits")
    >>> ds.input_shape, ds.num_outputs
    ((64,), 10)
    """
    options = options or SourceOptions()
    scheme, arg = split_spec(spec)
    loaders = _loaders()
    if scheme not in loaders:
        raise DataError(
            f"unknown data source {spec!r}",
            hint="use one of: " + ", ".join(f"{n}" for n in sorted(loaders))
            + " (for example 'digits', 'fashion-mnist', 'idx:DIR', 'csv:PATH')",
        )
    dataset = loaders[scheme](arg, options)
    if options.groups and dataset.train.groups is None:
        raise DataError(f"data source {spec!r} has no columns, so it cannot have group "
                        f"columns ({', '.join(options.groups)})",
                        hint="group columns come with tables: csv:, parquet:, or a prepared "
                        "folder made with 'data prepare --group'")
    return dataset


def require_path(arg: str, scheme: str) -> Path:
    """The path argument of ``scheme:PATH``, checked to exist."""
    if not arg:
        raise DataError(f"data source '{scheme}:' needs a path", hint=f"write '{scheme}:PATH'")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DataError(f"data path '{path}' does not exist", hint="check the path and spelling")
    return path
