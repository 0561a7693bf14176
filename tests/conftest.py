"""Fixtures shared by the test modules."""

import numpy as np
import pytest

from npclust.datasets import make_blobs


@pytest.fixture
def blobs_file(tmp_path):
    """Three float32 blobs (48 x 3) and the ``.npy`` file holding them, for command tests."""
    X, _ = make_blobs(n_samples=48, n_features=3, centers=3, random_state=4)
    X = X.astype(np.float32)
    path = tmp_path / "data.npy"
    np.save(path, X)
    return X, path
