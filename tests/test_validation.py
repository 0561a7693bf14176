"""Input checks: accepted inputs, and a message naming the problem for everything else."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from npclust.validation import NotFittedError, check_array, check_is_fitted


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("X", [
    [[1, 2], [3, 4]],
    np.array([[1, 2], [3, 4]], dtype=np.int64),
    np.array([[True, False], [False, True]]),
    np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object),
    np.array([[1, 2.5], [np.float32(3), np.int8(4)]], dtype=object),
], ids=["list", "int", "bool", "object", "object-mixed"])
def test_numeric_input_is_converted(X, dtype):
    converted = check_array(X, dtype=dtype)
    assert converted.dtype == dtype and converted.shape == (2, 2)


def test_right_dtype_is_not_copied():
    X = np.ones((3, 2), dtype=np.float32)
    assert check_array(X) is X


@pytest.mark.parametrize("X, kwargs, error, message", [
    (np.ones((2, 2)) * 1j, {}, ValueError, "Complex data not supported"),
    (np.array([["a", "b"]]), {}, TypeError, "non-numeric dtype <U1"),
    (np.array([[1.0, {"a": 1}]], dtype=object), {}, TypeError,
     r"not a number \(first at row 0, column 1: \{'a': 1\}\).*must be a string or a real number"),
    (np.zeros(3), {}, ValueError, r"got 1-D.*Reshape your data"),
    (np.zeros((2, 2, 2)), {}, ValueError, "got 3-D"),
    (np.zeros((1, 3)), {"min_samples": 2}, ValueError,
     r"1 sample\(s\) \(shape=\(1, 3\)\) while a minimum of 2 is required"),
    (np.zeros((0, 3)), {}, ValueError, r"0 sample\(s\)"),
    (np.zeros((4, 0)), {}, ValueError,
     r"0 feature\(s\) \(shape=\(4, 0\)\) while a minimum of 1 is required"),
    (np.zeros((2, 3)), {"n_features": 4, "estimator_name": "IMSAT"}, ValueError,
     "X has 3 features, but IMSAT is expecting 4 features as input"),
    (np.array([[0.0, np.nan]]), {}, ValueError, r"NaN or infinity \(first at row 0, column 1"),
    (np.array([[1, np.inf]], dtype=object), {}, ValueError, "NaN or infinity"),
])
def test_bad_input_is_named(X, kwargs, error, message):
    with pytest.raises(error, match=message):
        check_array(X, **kwargs)


def test_sparse_input_gets_a_hint():
    class Sparse:
        def toarray(self):
            return np.zeros((2, 2))

    with pytest.raises(TypeError, match=r"sparse.*toarray\(\)"):
        check_array(Sparse())


def test_check_is_fitted():
    class Estimator:
        pass

    estimator = Estimator()
    with pytest.raises(NotFittedError, match="this Estimator instance is not fitted yet"):
        check_is_fitted(estimator)
    estimator.n_features_in_ = 3
    check_is_fitted(estimator)


def test_scikit_learn_is_never_imported():
    # A fresh interpreter: fitting, predicting and the not-fitted error leave
    # scikit-learn unloaded, and the error is then npclust's alone.
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from npclust.cluster import KMeans
        from npclust.validation import NotFittedError
        try:
            KMeans(n_clusters=2).predict(np.zeros((2, 2)))
        except NotFittedError as error:
            assert type(error) is NotFittedError, type(error).__mro__
        KMeans(n_clusters=2, n_init=1).fit(np.arange(8.0).reshape(4, 2)).predict([[0.0, 1.0]])
        assert "sklearn" not in sys.modules, "npclust imported scikit-learn"
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
