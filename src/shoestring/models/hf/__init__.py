"""Hugging Face–format checkpoints: import a local folder, export a model back to one.

A Hugging Face checkpoint folder holds ``config.json`` (the architecture),
``model.safetensors`` (or shards listed in ``model.safetensors.index.json``)
and usually ``tokenizer.json``. :mod:`.families` maps the GPT-2, Llama,
Mistral and BERT families onto Shoestring's modules (config fields and tensor
names, both ways); :mod:`.folder` reads and writes the files. No network and
no ``transformers`` are needed: the mapping is plain tensors and JSON
(``transformers`` is only the test oracle).

>>> from shoestring.models.hf.families import SUPPORTED_MODEL_TYPES
>>> SUPPORTED_MODEL_TYPES
('bert', 'gpt2', 'llama', 'mistral')
"""
