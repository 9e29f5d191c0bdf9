"""``python -m shoestring`` is the ``shoestring`` command."""

from shoestring.cli.main import run

run()
