"""Prediction at scale: dask-ml's ParallelPostFit predicts block by block on an out-of-core array."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
wrappers = pytest.importorskip("dask_ml.wrappers")

from npclust.cluster import DEC, IMSAT, KMeans, SpectralClustering  # noqa: E402

ESTIMATORS = [
    IMSAT(n_clusters=3, hidden_dims=(8,), epochs=2, n_neighbors=3, random_state=0),
    DEC(n_clusters=3, hidden_dims=(8,), latent_dim=2, pretrain_epochs=2, max_iter=10,
        kmeans_n_init=1, random_state=0),
    KMeans(n_clusters=3, n_init=2, random_state=0),
    SpectralClustering(n_clusters=3, n_init=2, random_state=0),
]


@pytest.fixture(scope="module")
def memory_mapped(tmp_path_factory):
    """A float32 .npy on disk, opened as a read-only memory map, 8 times the chunk size."""
    X = np.random.default_rng(0).normal(size=(1024, 6)).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "X.npy"
    np.save(path, X)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_parallel_post_fit_predicts_blockwise_as_in_memory(memory_mapped, estimator):
    X = np.asarray(memory_mapped)
    model = wrappers.ParallelPostFit(estimator).fit(X[:256])
    blocks = da.from_array(memory_mapped, chunks=(128, X.shape[1]))
    labels = model.predict(blocks)
    assert isinstance(labels, da.Array) and labels.numblocks == (8,)
    np.testing.assert_array_equal(labels.compute(), model.estimator.predict(X))
    codes = model.transform(blocks)
    np.testing.assert_array_equal(codes.compute(), model.estimator.transform(X))
