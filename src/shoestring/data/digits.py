"""scikit-learn's bundled handwritten digits: the embedded default data.

1,797 8×8 images with values 0–16 (UCI optical digits); shipped inside
scikit-learn, so it needs no download.
"""

from __future__ import annotations

import numpy as np
import torch

from shoestring.data.holdout import stratified_holdout
from shoestring.data.sources import SourceOptions
from shoestring.errors import DataError
from shoestring.types import Dataset, Task, TensorDataset


def load_digits(arg: str, options: SourceOptions) -> Dataset:
    if arg:
        raise DataError(f"'digits' takes no argument, got 'digits:{arg}'", hint="write 'digits'")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_holdout(y, options.test_fraction, options.seed)
    return Dataset(
        name="digits",
        task=Task.classification,
        train=TensorDataset(torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])),
        test=TensorDataset(torch.from_numpy(x[test_idx]), torch.from_numpy(y[test_idx])),
        input_shape=(64,),
        num_outputs=10,
        raw_scale=1.0 / 16.0,  # pixel values are counts 0..16
        class_names=tuple(str(i) for i in range(10)),
    )
