"""Model families, tokenizers, and the run-folder contract.

A model is described by an *architecture* dict, ``{"family": ..., "params":
{...}}``, that is enough to rebuild it without the training code;
:func:`build_model` turns it into a ``torch.nn.Module``. A trained model
lives in a run folder with its typed card (:mod:`shoestring.models.card`);
:func:`~shoestring.models.run_folder.save_run` and
:func:`~shoestring.models.run_folder.load_run` are the only way in and out.
"""
