"""Data sources and (later) preparation.

``load_dataset("digits")`` returns a :class:`shoestring.types.Dataset`. Source
specs look like ``digits``, ``fashion-mnist``, ``idx:DIR`` or ``csv:PATH``;
:mod:`shoestring.data.sources` holds the registry that other capabilities
extend.
"""

from shoestring.data.sources import SourceOptions, load_dataset, register_source, source_names

__all__ = ["SourceOptions", "load_dataset", "register_source", "source_names"]
