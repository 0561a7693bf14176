"""Bad input to every estimator: a clear ValueError/TypeError naming the problem, or a conversion.

Arrays (empty, no features, wrong dimensions, NaN/inf, complex, strings, objects, sparse),
feature-count mismatches, hyper-parameters and predicting before fitting, for IMSAT,
DEC, IDEC, KMeans and SpectralClustering, through ``fit`` and through ``predict``/
``predict_proba``/``transform``.
"""

import numpy as np
import pytest
import scipy.sparse

from npclust.cluster import DEC, IDEC, IMSAT, KMeans, SpectralClustering
from npclust.datasets import make_blobs
from npclust.validation import NotFittedError, check_array

# Tiny settings: these tests are about validation, not about clustering quality.
SETTINGS = {
    "imsat": (IMSAT, dict(hidden_dims=(8,), epochs=2, batch_size=16, n_neighbors=3)),
    "dec": (DEC, dict(hidden_dims=(8,), latent_dim=2, pretrain_epochs=2, pretrain_batch_size=16,
                      max_iter=4, update_interval=2, batch_size=16, kmeans_n_init=1)),
    "idec": (IDEC, dict(hidden_dims=(8,), latent_dim=2, pretrain_epochs=2,
                        pretrain_batch_size=16, max_iter=4, update_interval=2, batch_size=16,
                        kmeans_n_init=1)),
    "kmeans": (KMeans, dict(n_init=1)),
    "spectral": (SpectralClustering, dict(n_neighbors=5, n_init=1)),
}
NAMES = list(SETTINGS)
N_SAMPLES, N_FEATURES = 40, 4


def make(name, **overrides):
    cls, settings = SETTINGS[name]
    return cls(**{"n_clusters": 2, "random_state": 0, **settings, **overrides})


def _blobs():
    X, _ = make_blobs(n_samples=N_SAMPLES, n_features=N_FEATURES, centers=2, cluster_std=0.5,
                      random_state=1)
    return (X - X.mean(axis=0)) / X.std(axis=0)


X_GOOD = _blobs()


@pytest.fixture(scope="module")
def fitted():
    return {name: make(name).fit(X_GOOD) for name in NAMES}


def _with(value, row=3, column=1):
    X = X_GOOD.copy()
    X[row, column] = value
    return X


class ArrayLike:
    """A pandas-like object: no ndarray, but ``__array__``."""

    def __init__(self, data):
        self.data = data

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)


# (id, X, exception type, message fragment). Each is refused by fit and by predict.
BAD_ARRAYS = [
    ("empty", np.zeros((0, N_FEATURES)), ValueError, r"0 sample\(s\)"),
    ("no features", np.zeros((N_SAMPLES, 0)), ValueError, r"0 feature\(s\)"),
    ("1-D", X_GOOD[:, 0], ValueError, "must be 2-D.*reshape"),
    ("3-D", X_GOOD[None], ValueError, "must be 2-D.*3-D"),
    ("0-D", np.float64(1.0), ValueError, "must be 2-D.*0-D"),
    ("NaN", _with(np.nan), ValueError, "NaN or infinity.*row 3, column 1"),
    ("+inf", _with(np.inf), ValueError, "NaN or infinity.*row 3, column 1"),
    ("-inf", _with(-np.inf), ValueError, "NaN or infinity"),
    ("float32 overflow", _with(1e39), ValueError, "too large for float32.*float64"),
    ("complex", X_GOOD.astype(complex), ValueError, "[Cc]omplex"),
    ("strings", X_GOOD.astype(str), TypeError, "non-numeric dtype"),
    ("bytes", X_GOOD.astype("S8"), TypeError, "non-numeric dtype"),
    ("object with a string", np.array([[1.0, "a", 2.0, 3.0]] * N_SAMPLES, dtype=object),
     TypeError, "not a number.*column 1"),
    ("object with None", np.array([[1.0, None, 2.0, 3.0]] * N_SAMPLES, dtype=object),
     ValueError, "NaN or infinity.*column 1"),  # NumPy converts None to NaN
    ("None", None, TypeError, "X is None"),
    ("dict", {"a": [1, 2]}, ValueError, "must be 2-D.*0-D"),
    ("ragged list", [[1.0, 2.0, 3.0, 4.0], [1.0]] * (N_SAMPLES // 2), ValueError,
     "could not be converted"),
    ("csr sparse", scipy.sparse.csr_matrix(X_GOOD), TypeError, "sparse.*toarray"),
    ("csc sparse", scipy.sparse.csc_matrix(X_GOOD), TypeError, "sparse"),
    ("coo sparse array", scipy.sparse.coo_array(X_GOOD), TypeError, "sparse"),
    ("masked", np.ma.masked_array(X_GOOD, mask=np.eye(N_SAMPLES, N_FEATURES, dtype=bool)),
     ValueError, "masked entries"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case, X, error, message", BAD_ARRAYS, ids=[c[0] for c in BAD_ARRAYS])
def test_fit_rejects_bad_arrays(name, case, X, error, message):
    overrides = {"dtype": "float32"} if case == "float32 overflow" else {}
    with pytest.raises(error, match=message):
        make(name, **overrides).fit(X)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case, X, error, message", BAD_ARRAYS, ids=[c[0] for c in BAD_ARRAYS])
def test_inference_rejects_bad_arrays(fitted, method, name, case, X, error, message):
    if case == "empty":
        message = r"0 sample\(s\).*minimum of 1"
    if case == "float32 overflow" and fitted[name]._dtype() == np.float64:
        assert len(getattr(fitted[name], method)(X)) == N_SAMPLES  # fits in float64
        return
    with pytest.raises(error, match=message):
        getattr(fitted[name], method)(X)


@pytest.mark.parametrize("name", NAMES)
def test_fit_needs_two_samples(name):
    with pytest.raises(ValueError, match=r"1 sample\(s\).*minimum of 2"):
        make(name).fit(X_GOOD[:1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_columns", [3, 5, 1])
def test_feature_count_mismatch_names_both_counts(fitted, name, n_columns):
    with pytest.raises(ValueError, match=f"X has {n_columns} features.*expecting {N_FEATURES}"):
        fitted[name].predict(np.zeros((2, n_columns)))


@pytest.mark.parametrize("name", NAMES)
def test_y_of_the_wrong_length(name):
    with pytest.raises(ValueError, match="y must have shape"):
        make(name).fit(X_GOOD, y=np.zeros(N_SAMPLES + 1))


# ----------------------------------------------------------- converted input
def _converted_inputs():
    X_int = np.round(X_GOOD * 4).astype(np.int64)
    return [
        # (id, input, the float array it must be treated exactly like)
        ("int64", X_int, X_int),
        ("int8", X_int.astype(np.int8), X_int),
        ("uint8", (X_int - X_int.min()).astype(np.uint8), X_int - X_int.min()),
        ("bool", X_GOOD > 0, (X_GOOD > 0).astype(float)),
        ("float16", X_GOOD.astype(np.float16), X_GOOD.astype(np.float16).astype(float)),
        ("big-endian float64", X_GOOD.astype(">f8"), X_GOOD),
        ("list of lists", X_GOOD.tolist(), X_GOOD),
        ("tuple of tuples", tuple(map(tuple, X_GOOD)), X_GOOD),
        ("__array__ object", ArrayLike(X_GOOD), X_GOOD),
        ("object array of floats", X_GOOD.astype(object), X_GOOD),
        ("np.matrix", np.asmatrix(X_GOOD), X_GOOD),
        ("Fortran order", np.asfortranarray(X_GOOD), X_GOOD),
        ("strided view", np.repeat(X_GOOD, 2, axis=1)[:, ::2], X_GOOD),
        ("masked, nothing masked", np.ma.masked_array(X_GOOD), X_GOOD),
    ]


CONVERTED = _converted_inputs()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case, X, reference", CONVERTED, ids=[c[0] for c in CONVERTED])
def test_fit_converts_like_the_float_array(name, case, X, reference):
    model = make(name).fit(X)
    expected = make(name).fit(np.asarray(reference, dtype=model._dtype()))
    np.testing.assert_array_equal(model.labels_, expected.labels_)
    assert model.labels_.shape == (N_SAMPLES,) and model.labels_.dtype.kind in "iu"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case, X, reference", CONVERTED, ids=[c[0] for c in CONVERTED])
def test_predict_converts_like_the_float_array(fitted, name, case, X, reference):
    model = fitted[name]
    expected = np.asarray(reference, dtype=model._dtype())
    np.testing.assert_array_equal(model.predict(X), model.predict(expected))
    proba = model.predict_proba(X)
    assert proba.dtype == model._dtype() and proba.shape == (N_SAMPLES, 2)


@pytest.mark.parametrize("name", NAMES)
def test_dataframe_input(name):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(X_GOOD, columns=list("abcd"))
    model = make(name).fit(frame)
    np.testing.assert_array_equal(model.labels_, make(name).fit(X_GOOD).labels_)
    np.testing.assert_array_equal(model.predict(frame), model.labels_)


@pytest.mark.parametrize("name", NAMES)
def test_read_only_and_memory_mapped_input_is_not_modified(name, tmp_path):
    X = X_GOOD.astype(SETTINGS[name][0]()._dtype())
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    read_only = X.copy()
    read_only.setflags(write=False)
    for data in (mapped, read_only):
        model = make(name).fit(data)
        model.predict(data)
        model.transform(data)
    np.testing.assert_array_equal(np.load(tmp_path / "X.npy"), X)
    np.testing.assert_array_equal(read_only, X)


@pytest.mark.parametrize("name", NAMES)
def test_fit_does_not_modify_writable_input(name):
    X = X_GOOD.astype(SETTINGS[name][0]()._dtype())  # no conversion copy inside fit
    before = X.copy()
    model = make(name).fit(X)
    model.predict(X)
    model.transform(X)
    np.testing.assert_array_equal(X, before)


# ------------------------------------------------------------ not fitted yet
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform"])
def test_not_fitted_error(name, method):
    model = make(name)
    with pytest.raises(NotFittedError, match="not fitted yet; call fit first") as error:
        getattr(model, method)(X_GOOD)
    assert isinstance(error.value, ValueError) and isinstance(error.value, AttributeError)
    # hasattr-style probing sees a missing attribute, not a crash.
    assert not hasattr(model, "labels_")


def test_not_fitted_error_is_caught_either_way():
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    for base in (ValueError, AttributeError):
        with pytest.raises(base):
            IMSAT().predict(X_GOOD)


# ------------------------------------------------------------ hyper-parameters
COMMON_PARAMS = [
    ("n_clusters", 0, ValueError, r"n_clusters must be in \[1, 40\], got 0"),
    ("n_clusters", 0, ValueError, "n_clusters"),
    ("n_clusters", -2, ValueError, "n_clusters"),
    ("n_clusters", 41, ValueError, r"n_clusters must be in \[1, 40\], got 41"),
    ("n_clusters", 2.5, TypeError, "n_clusters must be an integer, got 2.5"),
    ("n_clusters", 2.0, TypeError, "n_clusters must be an integer"),
    ("n_clusters", "3", TypeError, "n_clusters must be an integer"),
    ("n_clusters", True, TypeError, "n_clusters must be an integer"),
    ("n_clusters", None, TypeError, "n_clusters must be an integer"),
    ("n_init", 0, ValueError, "n_init must be >= 1"),
    ("dtype", "int8", ValueError, "dtype must be 'float32' or 'float64'"),
    ("dtype", np.float16, ValueError, "dtype must be 'float32' or 'float64'"),
    ("random_state", -1, ValueError, "random_state"),
    ("random_state", "seed", TypeError, "random_state"),
    ("random_state", 1.5, TypeError, "random_state"),
]
DEEP_PARAMS = [
    ("lr", 0, ValueError, "lr must be a finite positive number, got 0.0"),
    ("lr", -1e-3, ValueError, "lr must be a finite positive"),
    ("lr", float("nan"), ValueError, "lr must be a finite positive"),
    ("lr", float("inf"), ValueError, "lr must be a finite positive"),
    ("lr", "0.1", TypeError, "lr must be a real number"),
    ("batch_size", 0, ValueError, "batch_size must be >= 2"),
    ("batch_size", 1, ValueError, "batch_size must be >= 2"),
    ("batch_size", -8, ValueError, "batch_size must be >= 2"),
    ("batch_size", 8.0, TypeError, "batch_size must be an integer"),
    ("hidden_dims", (0,), ValueError, "hidden_dims"),
    ("hidden_dims", (8, -1), ValueError, "hidden_dims"),
    ("hidden_dims", (2.5,), ValueError, "hidden_dims"),
]
PER_ESTIMATOR_PARAMS = {
    "imsat": [
        ("epochs", 0, ValueError, "epochs must be >= 1"),
        ("epochs", -3, ValueError, "epochs must be >= 1"),
        ("n_neighbors", 0, ValueError, "n_neighbors"),
        ("n_neighbors", N_SAMPLES, ValueError, r"n_neighbors must be in \[1, 39\]"),
        ("mu", -1.0, ValueError, "mu"),
        ("lam", 0, ValueError, "lam"),
        ("xi", 0, ValueError, "xi"),
        ("eps_scale", -0.1, ValueError, "eps_scale"),
    ],
    "dec": [
        ("pretrain_epochs", 0, ValueError, "pretrain_epochs must be >= 1"),
        ("pretrain_lr", 0, ValueError, "pretrain_lr must be a finite positive"),
        ("pretrain_batch_size", 0, ValueError, "pretrain_batch_size must be >= 2"),
        ("max_iter", 0, ValueError, "max_iter must be >= 1"),
        ("update_interval", 0, ValueError, "update_interval must be >= 1"),
        ("latent_dim", 0, ValueError, "latent_dim"),
        ("alpha", 0, ValueError, "alpha"),
        ("tol", -0.1, ValueError, "tol"),
        ("tol", 1.5, ValueError, "tol"),
        ("corruption", 1.0, ValueError, "corruption"),
        ("weight_decay", -1.0, ValueError, "weight_decay"),
        ("kmeans_n_init", 0, ValueError, "kmeans_n_init"),
        ("hidden_dims", 5, ValueError, "hidden_dims"),
    ],
    "kmeans": [
        ("max_iter", 0, ValueError, "max_iter must be >= 1"),
        ("tol", -1.0, ValueError, "tol"),
    ],
    "spectral": [
        ("n_neighbors", 0, ValueError, "n_neighbors"),
        ("n_neighbors", N_SAMPLES, ValueError, r"n_neighbors must be in \[1, 39\]"),
        ("n_neighbors", 5.0, TypeError, "n_neighbors must be an integer"),
        ("scale_neighbor", 6, ValueError, r"scale_neighbor must be in \[1, 5\]"),
        ("scale_neighbor", "7", TypeError, "scale_neighbor must be an integer"),
        ("weights", "rbf", ValueError, "unknown weights 'rbf'"),
        ("solver", None, ValueError, "unknown solver None"),
    ],
}
PER_ESTIMATOR_PARAMS["idec"] = PER_ESTIMATOR_PARAMS["dec"] + [("gamma", 0, ValueError, "gamma")]


def _param_cases():
    for name in NAMES:
        cases = COMMON_PARAMS + (DEEP_PARAMS if name not in ("kmeans", "spectral") else [])
        cases += PER_ESTIMATOR_PARAMS[name]
        for param, value, error, message in cases:
            yield pytest.param(name, param, value, error, message,
                               id=f"{name}-{param}={value!r}")


@pytest.mark.parametrize("name, param, value, error, message", list(_param_cases()))
def test_invalid_hyper_parameter(name, param, value, error, message):
    model = make(name, **{param: value})  # __init__ stores, fit validates
    with pytest.raises(error, match=message):
        model.fit(X_GOOD)
    assert not hasattr(model, "labels_")


@pytest.mark.parametrize("name, param", [("imsat", "mu"), ("dec", "weight_decay"), ("dec", "tol"),
                                         ("idec", "tol")])
def test_a_zero_where_zero_means_off_is_accepted(name, param):
    # mu = 0: no class-balance term; weight_decay = 0: none; tol = 0: never stop early.
    assert make(name, **{param: 0.0}).fit(X_GOOD).labels_.shape == (N_SAMPLES,)


@pytest.mark.parametrize("name", NAMES)
def test_n_clusters_equal_to_n_samples_is_allowed(name):
    X = X_GOOD[:6]
    extra = {"n_neighbors": 2, "batch_size": 6} if name == "imsat" else {}
    model = make(name, n_clusters=6, **extra).fit(X)
    assert model.predict_proba(X).shape == (6, 6)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_name_lists_the_valid_ones(name):
    cls = SETTINGS[name][0]
    with pytest.raises(ValueError, match=r"invalid parameter 'n_cluster'.*valid parameters are "
                                         r"\[.*'n_clusters'"):
        cls().set_params(n_cluster=3)
    with pytest.raises(TypeError, match="n_cluster"):
        cls(n_cluster=3)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_dtype_name_lists_the_valid_ones(name):
    with pytest.raises(ValueError, match="float32.*float64"):
        make(name, dtype="float31").fit(X_GOOD)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_none_is_refused(name):
    with pytest.raises((TypeError, ValueError), match="dtype"):
        make(name, dtype=None).fit(X_GOOD)


def test_imsat_hidden_dims_not_a_tuple():
    with pytest.raises((TypeError, ValueError), match="hidden_dims"):
        make("imsat", hidden_dims=5).fit(X_GOOD)


# ------------------------------------------------------------ check_array itself
def test_check_array_keeps_memory_maps_and_matching_arrays(tmp_path):
    X = X_GOOD.astype(np.float32)
    assert check_array(X) is X
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert isinstance(check_array(mapped), np.memmap)


def test_check_array_names_the_argument():
    with pytest.raises(ValueError, match="^data contains NaN"):
        check_array(_with(np.nan), name="data")


def test_check_array_dataframe_with_a_toarray_column_is_not_sparse():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"toarray": [1.0, 2.0], "tocsr": [3.0, 4.0]})
    np.testing.assert_array_equal(check_array(frame), [[1, 3], [2, 4]])


def test_float64_data_beyond_float32_is_accepted_with_dtype_float64():
    model = make("kmeans", dtype="float64").fit(_with(1e39))
    assert model.labels_.shape == (N_SAMPLES,)
