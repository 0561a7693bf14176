"""scikit-learn compatibility: its own estimator checks, clone, Pipeline and GridSearchCV.

npclust never imports scikit-learn; these tests run when it is installed (the
``sklearn`` extra) and skip cleanly otherwise.
"""

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone, is_clusterer  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.exceptions import NotFittedError as SklearnNotFittedError  # noqa: E402
from sklearn.metrics import adjusted_rand_score, make_scorer, silhouette_score  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import estimator_checks  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

from npclust.cluster import DEC, IDEC, IMSAT, KMeans, SpectralClustering  # noqa: E402
from npclust.validation import NotFittedError  # noqa: E402

SKLEARN_VERSION = tuple(int(part) for part in sklearn.__version__.split(".")[:2])

# npclust estimators do not inherit from sklearn.base.BaseEstimator (that would make
# scikit-learn a dependency); the checks warn about it, when collected and when run.
_NOT_BASE_ESTIMATOR = "Estimator .* does not inherit from"
pytestmark = pytest.mark.filterwarnings(f"ignore:{_NOT_BASE_ESTIMATOR}")

# The checks fit on 1-60 samples with 1-10 features: tiny networks, a few epochs.
FAST_ESTIMATORS = [
    IMSAT(n_clusters=3, hidden_dims=(8,), epochs=3, batch_size=32, n_neighbors=5),
    DEC(n_clusters=3, hidden_dims=(8,), latent_dim=2, pretrain_epochs=3, pretrain_batch_size=32,
        max_iter=10, update_interval=5, batch_size=32, kmeans_n_init=1),
    IDEC(n_clusters=3, hidden_dims=(8,), latent_dim=2, pretrain_epochs=3,
         pretrain_batch_size=32, max_iter=10, update_interval=5, batch_size=32, kmeans_n_init=1),
    KMeans(n_clusters=3, n_init=1),
    SpectralClustering(n_clusters=3, n_neighbors=5, n_init=1),
]

if SKLEARN_VERSION >= (1, 6):
    # Every check of scikit-learn's, none expected to fail.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _NOT_BASE_ESTIMATOR)
        _parametrize = estimator_checks.parametrize_with_checks(FAST_ESTIMATORS)

    @_parametrize
    def test_sklearn_estimator_checks(estimator, check):
        check(estimator)
else:
    @pytest.mark.skip(reason="parametrize_with_checks of npclust's estimators needs scikit-learn >= 1.6")
    def test_sklearn_estimator_checks():
        pass


# scikit-learn runs its clustering checks only for subclasses of its ClusterMixin;
# npclust's estimators declare themselves clusterers through tags, so run them here.
@pytest.mark.parametrize("readonly_memmap", [False, True])
@pytest.mark.parametrize("estimator", FAST_ESTIMATORS, ids=lambda e: type(e).__name__)
def test_sklearn_clustering_check(estimator, readonly_memmap):
    estimator_checks.check_clustering(type(estimator).__name__, estimator,
                                      readonly_memmap=readonly_memmap)


@pytest.mark.parametrize("estimator", FAST_ESTIMATORS, ids=lambda e: type(e).__name__)
def test_declared_a_clusterer_without_inheriting_from_sklearn(estimator):
    assert is_clusterer(estimator)
    if SKLEARN_VERSION >= (1, 6):
        from sklearn.utils import get_tags

        tags = get_tags(estimator)
        assert tags.estimator_type == "clusterer" and not tags.target_tags.required


# ---------------------------------------------------------------- ecosystem


@pytest.fixture(scope="module")
def blobs():
    # Raw scale on purpose: features of very different size and offset.
    X, y = make_blobs(n_samples=150, n_features=4, centers=3, cluster_std=0.6, random_state=3)
    return X * [1.0, 10.0, 100.0, 0.1] + [0.0, -50.0, 300.0, 7.0], y


def _imsat(**params):
    return IMSAT(**{**dict(n_clusters=3, hidden_dims=(32,), epochs=15, batch_size=50,
                           n_neighbors=5), **params})


@pytest.mark.parametrize("estimator", FAST_ESTIMATORS, ids=lambda e: type(e).__name__)
def test_clone_copies_parameters_not_fit(estimator, blobs):
    X, _ = blobs
    fitted = clone(estimator).set_params(random_state=4).fit(StandardScaler().fit_transform(X))
    copy = clone(fitted)
    assert type(copy) is type(fitted)
    # clone itself checks that __init__ stored every parameter unchanged.
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "labels_") and not hasattr(copy, "n_features_in_")
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(copy)
    check_is_fitted(fitted)


def test_not_fitted_error_is_both_libraries_error():
    with pytest.raises(SklearnNotFittedError, match="not fitted") as caught:
        _imsat().predict(np.zeros((2, 4)))
    assert isinstance(caught.value, NotFittedError)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, AttributeError)
    assert isinstance(pickle.loads(pickle.dumps(caught.value)), SklearnNotFittedError)


def test_pipeline_after_standard_scaler(blobs):
    X, y = blobs
    pipeline = make_pipeline(StandardScaler(), _imsat(random_state=0))
    labels = pipeline.fit_predict(X)
    assert adjusted_rand_score(y, labels) >= 0.95
    np.testing.assert_array_equal(pipeline.predict(X), labels)
    assert pipeline.predict_proba(X).shape == (150, 3)
    assert pipeline.transform(X).shape == (150, 3)  # IMSAT's logits
    # Without the scaler the same model sees features 1000x apart.
    refit = clone(pipeline).fit(X)
    np.testing.assert_array_equal(refit.predict(X), labels)


def test_grid_search_over_n_clusters_with_ari(blobs):
    X, y = blobs
    search = GridSearchCV(
        make_pipeline(StandardScaler(), _imsat(random_state=0)),
        {"imsat__n_clusters": [2, 3, 4], "imsat__lr": [2e-3]},
        scoring=make_scorer(adjusted_rand_score), cv=3,
    ).fit(X, y)
    assert search.best_params_["imsat__n_clusters"] == 3
    assert search.best_score_ >= 0.9
    assert adjusted_rand_score(y, search.predict(X)) >= 0.95


def test_grid_search_without_labels_scores_by_silhouette(blobs):
    X, y = blobs

    def silhouette(estimator, X, y=None):
        return silhouette_score(X, estimator.predict(X))

    search = GridSearchCV(make_pipeline(StandardScaler(), KMeans(n_init=3, random_state=0)),
                          {"kmeans__n_clusters": [2, 3, 4, 5]}, scoring=silhouette, cv=3).fit(X)
    assert search.best_params_["kmeans__n_clusters"] == 3
    assert adjusted_rand_score(y, search.predict(X)) >= 0.95


class _Frame:
    """The part of a DataFrame the estimators look at: ``columns`` and ``__array__``."""

    def __init__(self, values, columns):
        self.values, self.columns = np.asarray(values), list(columns)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_feature_names_are_kept_and_checked(blobs):
    X, _ = blobs
    X = StandardScaler().fit_transform(X)
    names = ["a", "b", "c", "d"]
    model = KMeans(n_clusters=3, random_state=0).fit(_Frame(X, names))
    np.testing.assert_array_equal(model.feature_names_in_, names)
    np.testing.assert_array_equal(model.predict(_Frame(X, names)), model.labels_)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    with pytest.raises(ValueError, match="different feature names"):
        model.predict(_Frame(X, ["a", "b", "d", "c"]))
    # Default integer column labels are positions, not names; a refit forgets old names.
    assert not hasattr(model.fit(_Frame(X, range(4))), "feature_names_in_")
