"""Tests for npclust.datasets: the embedded digits and make_blobs."""

from importlib import resources

import numpy as np
import pytest

from npclust.datasets import load_digits, make_blobs

DIGIT_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


# --------------------------------------------------------------------------- digits


def test_digits_scaled():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), DIGIT_COUNTS)
    # Every value is a count of 16 pixels divided by 16.
    np.testing.assert_array_equal(X * 16, np.round(X * 16))


def test_digits_raw_agree_with_scaled():
    X_raw, y_raw = load_digits(scaled=False)
    X, y = load_digits()
    assert X_raw.dtype == np.int64
    assert X_raw.min() == 0 and X_raw.max() == 16
    np.testing.assert_array_equal(X_raw / 16.0, X)
    np.testing.assert_array_equal(y_raw, y)


def test_digits_content_is_plausible():
    X, y = load_digits()
    # Not shuffled garbage: the first image is a 0 whose centre is empty and whose
    # ring is inked; mean images of different digits differ clearly.
    assert y[0] == 0
    first = X[0].reshape(8, 8)
    assert first[3:5, 3:5].max() == 0.0 and first[1:7, 1:7].sum() > 10
    means = np.stack([X[y == d].mean(axis=0) for d in range(10)])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[~np.eye(10, dtype=bool)].min() > 1.0


def test_digits_calls_return_independent_arrays():
    X, _ = load_digits()
    X[:] = -1.0
    X_again, _ = load_digits()
    assert X_again.min() == 0.0


def test_digits_files_ship_with_the_package():
    data = resources.files("npclust").joinpath("data")
    assert data.joinpath("digits.npz").is_file()
    licence = data.joinpath("DIGITS_LICENSE.txt").read_text(encoding="utf-8")
    for fact in ("Alpaydin", "Kaynak", "10.24432/C50P49", "CC BY 4.0"):
        assert fact in licence


def test_digits_match_sklearn_copy():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    X_raw, y = load_digits(scaled=False)
    reference = sklearn_datasets.load_digits()
    np.testing.assert_array_equal(X_raw, reference.data)
    np.testing.assert_array_equal(y, reference.target)


# --------------------------------------------------------------------------- blobs


def test_blobs_shapes_and_split():
    X, y = make_blobs(n_samples=302, centers=4, random_state=0)
    assert X.shape == (302, 2) and X.dtype == np.float64
    assert y.shape == (302,) and y.dtype == np.int64
    # 302 = 4 * 75 + 2: the first two blobs get the remainder.
    np.testing.assert_array_equal(np.bincount(y), [76, 76, 75, 75])


def test_blobs_reproducible_with_seed_and_different_with_another():
    X1, y1 = make_blobs(random_state=42)
    X2, y2 = make_blobs(random_state=42)
    X3, _ = make_blobs(random_state=43)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(X1, X3)


def test_blobs_accept_generator_and_advance_it():
    rng = np.random.default_rng(0)
    X1, _ = make_blobs(random_state=rng)
    X2, _ = make_blobs(random_state=rng)
    assert not np.allclose(X1, X2)
    X3, _ = make_blobs(random_state=np.random.default_rng(0))
    np.testing.assert_array_equal(X1, X3)


def test_blobs_random_centers_lie_in_box():
    _, _, centers = make_blobs(
        centers=50, n_features=3, center_box=(2.0, 5.0), random_state=1, return_centers=True
    )
    assert centers.shape == (50, 3)
    assert centers.min() >= 2.0 and centers.max() < 5.0


def test_blobs_given_centers_and_stds():
    centers = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    X, y, returned = make_blobs(
        n_samples=4000, centers=centers, cluster_std=[0.5, 2.0],
        shuffle=False, random_state=2, return_centers=True,
    )
    assert X.shape == (4000, 3)  # n_features taken from the centers
    np.testing.assert_array_equal(y, np.repeat([0, 1], 2000))  # unshuffled: blob order
    np.testing.assert_array_equal(returned, centers)
    returned[0, 0] = 7.0
    assert centers[0, 0] == 0.0  # the returned centers are a copy
    for k, std in enumerate([0.5, 2.0]):
        np.testing.assert_allclose(X[y == k].mean(axis=0), centers[k], atol=0.15)
        np.testing.assert_allclose(X[y == k].std(axis=0), std, rtol=0.06)


def test_blobs_zero_std_puts_points_on_centers():
    X, y, centers = make_blobs(n_samples=9, centers=3, cluster_std=0.0,
                               random_state=3, return_centers=True)
    np.testing.assert_array_equal(X, centers[y])


def test_blobs_are_separable_when_far_apart():
    X, y, centers = make_blobs(n_samples=600, centers=[[-20, 0], [0, 20], [20, 0]],
                               cluster_std=1.0, random_state=4, return_centers=True)
    nearest = np.argmin(((X[:, None] - centers[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest, y)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"n_samples": 0}, ValueError, "n_samples must be a positive int, got 0"),
        ({"n_samples": 10.0}, TypeError, "n_samples must be a positive int, got float"),
        ({"n_samples": True}, TypeError, "n_samples must be a positive int, got bool"),
        ({"n_samples": 2, "centers": 3}, ValueError, "smaller than the number of centers"),
        ({"n_features": -1}, ValueError, "n_features must be a positive int"),
        ({"centers": 0}, ValueError, "centers must be a positive int"),
        ({"centers": True}, TypeError, "got bool"),
        ({"centers": [1.0, 2.0]}, ValueError, "centers must have 2 dimension"),
        ({"centers": np.zeros((0, 2))}, ValueError, "non-empty"),
        ({"centers": [[0.0, np.nan]]}, ValueError, "centers must be finite"),
        ({"centers": [["a", "b"]]}, TypeError, "centers must be numeric"),
        ({"centers": np.zeros((2, 3)), "n_features": 2}, ValueError, "contradicts centers"),
        ({"cluster_std": -1.0}, ValueError, "cluster_std must be >= 0"),
        ({"cluster_std": [1.0, 2.0]}, ValueError, "one entry per center \\(3\\)"),
        ({"cluster_std": np.inf}, ValueError, "cluster_std must be finite"),
        ({"center_box": (5.0, 5.0)}, ValueError, "low < high"),
        ({"center_box": (0.0, 1.0, 2.0)}, ValueError, "center_box must be a pair"),
        ({"random_state": "seed"}, TypeError, "random_state must be"),
    ],
)
def test_blobs_validation(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_blobs(**kwargs)
