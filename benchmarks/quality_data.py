"""Visible data sets for the clustering-quality benchmark, generated, never shipped.

Every default of IMSAT, DEC and IDEC is judged on all of these, never on one: they
differ in dimension (40 to 784), in what a distance means (pixels, a 1-D signal,
Gaussian clouds), in cluster balance and in shape. Handwritten-digit images of
28 x 28 from the well-known 70,000-image set are deliberately *not* among them: that
data judges the defaults and must stay unseen.

Each loader returns ``(X, y)``: ``X`` float32 of shape (n_samples, n_features), ``y``
int64 labels in ``0 .. n_classes - 1``; the same ``seed`` gives the same arrays.

    ==============  ========  ====  =======  =====================================
    name            samples   dim   classes  what
    ==============  ========  ====  =======  =====================================
    digits            1797     64     10     the embedded 8x8 digits, in [0, 1]
    digits784         5391    784     10     each digit upsampled to 28x28, three
                                             randomly shifted, rotated and
                                             thickened/thinned copies, in [0, 1]
    mnist1d           4000     40     10     MNIST-1D (Greydanus 2020), standardised
    gauss100          3000    100     10     anisotropic Gaussians, sizes 1 : 5
    ==============  ========  ====  =======  =====================================
"""

import random

import numpy as np
from scipy import ndimage

from npclust.datasets import load_digits

__all__ = ["DATASETS", "load", "load_digits64", "load_digits784", "load_mnist1d",
           "load_gaussians"]


def load_digits64(seed=0):
    """The embedded UCI digits (1797 x 64, pixels scaled to [0, 1]); ``seed`` is unused."""
    X, y = load_digits()
    return np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64)


def load_digits784(seed=0, copies=3, max_shift=1.0, max_rotation=10.0):
    """A 784-dimensional image set made from the 8x8 digits.

    Each digit is upsampled (cubic spline) to 20 x 20 and centred in a 28 x 28 frame,
    the layout of the usual 28 x 28 digit images. Every copy is then rotated by an
    angle uniform in ``[-max_rotation, max_rotation]`` degrees, shifted by up to
    ``max_shift`` pixels in each direction (sub-pixel, linear interpolation), and its
    strokes are thickened (grey dilation, 2 x 2), thinned (grey erosion, 2 x 2) or
    left as they are, with equal probability. Pixels are clipped to [0, 1].

    Parameters
    ----------
    seed : int
    copies : int, default=3
        Distorted copies per digit: ``1797 * copies`` samples.
    max_shift : float, default=1.0
    max_rotation : float, default=10.0
        With these, k-means on the pixels reaches about 0.50 ACC (0.60 without any
        shift or rotation, 0.34 with 2 pixels and 15 degrees), close to k-means on
        the usual 28 x 28 digit images.

    Returns
    -------
    X : ndarray of shape (1797 * copies, 784), float32
    y : ndarray of shape (1797 * copies,), int64
    """
    rng = np.random.default_rng(seed)
    digits, labels = load_digits()
    images = np.asarray(digits, dtype=np.float64).reshape(-1, 8, 8)
    large = np.clip(ndimage.zoom(images, (1, 2.5, 2.5), order=3), 0.0, 1.0)   # (n, 20, 20)
    frame = np.zeros((images.shape[0], 28, 28))
    frame[:, 4:24, 4:24] = large
    out = np.empty((images.shape[0] * copies, 28, 28))
    row = 0
    for image in frame:
        for _ in range(copies):
            angle = rng.uniform(-max_rotation, max_rotation)
            shift = rng.uniform(-max_shift, max_shift, size=2)
            stroke = rng.integers(3)
            picture = ndimage.rotate(image, angle, reshape=False, order=1, mode="constant")
            picture = ndimage.shift(picture, shift, order=1, mode="constant")
            if stroke == 1:
                picture = ndimage.grey_dilation(picture, size=(2, 2))
            elif stroke == 2:
                picture = ndimage.grey_erosion(picture, size=(2, 2))
            out[row] = picture
            row += 1
    X = np.clip(out, 0.0, 1.0).reshape(-1, 784).astype(np.float32)
    y = np.repeat(np.asarray(labels, dtype=np.int64), copies)
    order = rng.permutation(X.shape[0])
    return X[order], y[order]


def load_mnist1d(seed=0, n_samples=4000):
    """MNIST-1D (Greydanus, *Scaling down deep learning*, 2020): 40-d signals, 10 classes.

    Generated locally by the ``mnist1d`` package's ``make_dataset`` with its published
    arguments (no download), ``num_samples=n_samples`` and ``seed``; the train and test
    splits are joined. ``make_dataset`` seeds Python's and NumPy's global generators;
    both are restored afterwards. The values are standardised as ``make_dataset``
    leaves them (mean 0, standard deviation 1 over the whole set).
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = n_samples, seed
    # make_dataset reseeds the global generators; leave the caller's as they were.
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)
    X = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return X, y


def load_gaussians(seed=0, n_clusters=10, n_features=100, smallest=100, largest=500,
                   separation=0.3):
    """Anisotropic Gaussian clusters of unequal sizes in ``n_features`` dimensions.

    Cluster sizes are spaced evenly from ``smallest`` to ``largest`` (a 5 : 1 ratio by
    default, 3000 samples). Each cluster has its own covariance ``R diag(s)^2 R^T``:
    a random rotation ``R`` and axis scales ``s`` log-uniform in [0.2, 2] (a 10 : 1
    anisotropy), so neither the shape nor the orientation is shared. The means are
    drawn from ``N(0, separation^2 I)``; with the default, k-means (10 restarts) on
    the standardised data reaches about 0.80 ACC (0.54 at 0.25, 1.0 at 0.6), so there
    is room to do better and to do worse.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
        Standardised columns (mean 0, variance 1), as a user would give it.
    y : ndarray of shape (n_samples,), int64
    """
    rng = np.random.default_rng(seed)
    sizes = np.round(np.linspace(smallest, largest, n_clusters)).astype(int)
    parts, labels = [], []
    for cluster, size in enumerate(sizes):
        rotation, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
        scales = np.exp(rng.uniform(np.log(0.2), np.log(2.0), n_features))
        mean = rng.normal(0.0, separation, n_features)
        parts.append(mean + (rng.standard_normal((size, n_features)) * scales) @ rotation.T)
        labels.append(np.full(size, cluster))
    X, y = np.concatenate(parts), np.concatenate(labels)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    order = rng.permutation(X.shape[0])
    return X[order].astype(np.float32), y[order].astype(np.int64)


DATASETS = {
    "digits": load_digits64,
    "digits784": load_digits784,
    "mnist1d": load_mnist1d,
    "gauss100": load_gaussians,
}


def load(name, seed=0):
    """``(X, y)`` of the named visible set (a key of ``DATASETS``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name](seed=seed)
