"""README's first Python example works as written (issue 16, item 7)."""

import subprocess
import sys


def test_from_shoestring_import_train_trains_and_reaches_the_ledger(tmp_path):
    code = """
from shoestring import train, resolve_config
result = train(resolve_config({"data": {"source": "digits"}, "train": {"epochs": 1},
                               "out": "run"}))
print(result.summary["status"], round(result.summary["test_accuracy"], 2) > 0.5)
from shoestring import list_runs
import os
print(len(list_runs(os.environ["SHOESTRING_DB"])))
"""
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={**__import__("os").environ, "SHOESTRING_DB": db},
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["finished", "True", "1"]
