"""Data to cluster without a download: the embedded handwritten digits, Gaussian blobs.

The digits are shipped inside the package (``npclust/data/digits.npz``, about 45 KB) so
that examples, tests and the command-line demo run offline; :func:`make_blobs` draws
synthetic clusters whose true labels are known.
"""

import numbers
from importlib import resources

import numpy as np

from .validation import check_random_state

__all__ = ["load_digits", "make_blobs"]

_DIGITS_FILE = "digits.npz"


def load_digits(scaled=True):
    """Load the 1,797 8x8 handwritten digits of the UCI optical-recognition data set.

    Parameters
    ----------
    scaled : bool, default=True
        If True, return pixels as float64 in [0, 1] (raw counts divided by 16), the
        input range the npclust networks expect. If False, return the raw pixel
        values, integers 0..16, as int64.

    Returns
    -------
    X : ndarray of shape (1797, 64)
        One flattened 8x8 image per row, row-major (``X[i].reshape(8, 8)`` is the
        image). float64 in [0, 1] if `scaled`, else int64 in 0..16.
    y : ndarray of shape (1797,), int64
        The digit, 0..9. Class sizes are 178, 182, 177, 183, 181, 182, 181, 179, 174
        and 180 for digits 0 to 9.

    Notes
    -----
    Source: the test split (``optdigits.tes``) of "Optical Recognition of Handwritten
    Digits", E. Alpaydin and C. Kaynak, UCI Machine Learning Repository, 1998,
    https://doi.org/10.24432/C50P49, licensed under CC BY 4.0. Each pixel counts the
    on-pixels of a 4x4 block of a 32x32 binary bitmap, hence the range 0..16. The
    values are stored unchanged as uint8; see ``npclust/data/DIGITS_LICENSE.txt``.

    Each call reads the file anew and returns fresh arrays, so callers may modify
    them in place.

    Examples
    --------
    >>> from npclust.datasets import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, y.shape, y.dtype
    ((1797, 64), dtype('float64'), (1797,), dtype('int64'))
    >>> float(X.min()), float(X.max())
    (0.0, 1.0)
    """
    # importlib.resources finds the file inside an installed wheel or zip as well as
    # in a source checkout; allow_pickle=False because an .npz never needs pickles.
    with resources.files("npclust").joinpath("data", _DIGITS_FILE).open("rb") as f:
        with np.load(f, allow_pickle=False) as archive:
            images = archive["images"]
            target = archive["target"]
    y = target.astype(np.int64)
    if scaled:
        return images.astype(np.float64) / 16.0, y
    return images.astype(np.int64), y


def _check_positive_int(value, name):
    """Return `value` as an int if it is a positive integer (not a bool), else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def _check_finite_array(value, name, ndim):
    """Return `value` as a float64 array with `ndim` dimensions and finite entries."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric, got {value!r}") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got NaN or infinity")
    return array


def make_blobs(
    n_samples=300,
    n_features=None,
    centers=3,
    cluster_std=1.0,
    center_box=(-10.0, 10.0),
    shuffle=True,
    random_state=None,
    return_centers=False,
):
    """Draw isotropic Gaussian clusters.

    Blob ``k`` is ``N(centers[k], cluster_std[k]**2 I)``. The samples are split as
    evenly as possible: each blob gets ``n_samples // n_centers`` points and the first
    ``n_samples % n_centers`` blobs one more.

    Parameters
    ----------
    n_samples : int, default=300
        Total number of points; at least the number of centers, so no blob is empty.
    n_features : int or None, default=None
        Dimension of the points. None means 2 when `centers` is an int and
        ``centers.shape[1]`` when it is an array; an explicit value that disagrees
        with an array of centers is an error rather than silently ignored.
    centers : int or array-like of shape (n_centers, n_features), default=3
        Number of blobs, whose centers are then drawn uniformly from `center_box` in
        every coordinate, or the centers themselves.
    cluster_std : float or array-like of shape (n_centers,), default=1.0
        Standard deviation of each blob, the same in every direction; >= 0.
    center_box : (float, float), default=(-10.0, 10.0)
        ``(low, high)`` bounds for random centers; unused when `centers` is an array.
    shuffle : bool, default=True
        Shuffle the points; if False they come blob by blob, blob 0 first.
    random_state : None, int or numpy.random.Generator, default=None
        Seeds the centers, the noise and the shuffle; see
        :func:`npclust.validation.check_random_state`.
    return_centers : bool, default=False
        Also return the centers.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
        The points.
    y : ndarray of shape (n_samples,), int64
        The blob each point was drawn from, ``0 .. n_centers - 1``.
    centers : ndarray of shape (n_centers, n_features), float64
        Only if `return_centers`.

    Raises
    ------
    TypeError
        If a count is not an int (bools included) or an array is not numeric.
    ValueError
        If a count is not positive, `n_samples` is smaller than the number of centers,
        `n_features` contradicts the centers, `cluster_std` is negative, of the wrong
        length or not finite, or `center_box` is not a finite ``low < high`` pair.

    Examples
    --------
    >>> from npclust.datasets import make_blobs
    >>> X, y = make_blobs(n_samples=10, centers=2, random_state=0)
    >>> X.shape, y.tolist().count(0), y.tolist().count(1)
    ((10, 2), 5, 5)
    """
    n_samples = _check_positive_int(n_samples, "n_samples")
    if n_features is not None:
        n_features = _check_positive_int(n_features, "n_features")

    if isinstance(centers, numbers.Integral) and not isinstance(centers, (bool, np.bool_)):
        n_centers = _check_positive_int(centers, "centers")
        if n_features is None:
            n_features = 2
        box = _check_finite_array(center_box, "center_box", ndim=1)
        if box.shape != (2,) or not box[0] < box[1]:
            raise ValueError(
                f"center_box must be a pair (low, high) with low < high, got {center_box!r}"
            )
        center_array = None
    else:
        if isinstance(centers, (bool, np.bool_)):
            raise TypeError("centers must be an int or an array of centers, got bool")
        center_array = _check_finite_array(centers, "centers", ndim=2)
        n_centers = center_array.shape[0]
        if n_centers == 0 or center_array.shape[1] == 0:
            raise ValueError(
                f"centers must be a non-empty 2-D array, got shape {center_array.shape}"
            )
        if n_features is None:
            n_features = center_array.shape[1]
        elif n_features != center_array.shape[1]:
            raise ValueError(
                f"n_features={n_features} contradicts centers of shape {center_array.shape}"
            )

    if n_samples < n_centers:
        raise ValueError(
            f"n_samples={n_samples} is smaller than the number of centers ({n_centers})"
        )

    std = _check_finite_array(cluster_std, "cluster_std", ndim=np.ndim(cluster_std))
    if std.ndim > 1 or (std.ndim == 1 and std.shape[0] != n_centers):
        raise ValueError(
            f"cluster_std must be a float or have one entry per center ({n_centers}), "
            f"got shape {std.shape}"
        )
    if (std < 0).any():
        raise ValueError(f"cluster_std must be >= 0, got {cluster_std!r}")
    std = np.broadcast_to(std, (n_centers,))

    rng = check_random_state(random_state)
    if center_array is None:
        center_array = rng.uniform(box[0], box[1], size=(n_centers, n_features))

    blob_sizes = np.full(n_centers, n_samples // n_centers)
    blob_sizes[: n_samples % n_centers] += 1
    y = np.repeat(np.arange(n_centers, dtype=np.int64), blob_sizes)
    X = center_array[y] + std[y, np.newaxis] * rng.standard_normal((n_samples, n_features))
    if shuffle:
        order = rng.permutation(n_samples)
        X, y = X[order], y[order]

    if return_centers:
        return X, y, center_array.copy()
    return X, y
