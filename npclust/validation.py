"""Input checks shared by the estimators and the command line, and the ``random_state`` rule.

Every check raises a ``ValueError`` or ``TypeError`` whose message names the
argument and what is wrong with it, so a user never has to read a NumPy traceback
from deep inside a training loop.
"""

import numbers
import sys

import numpy as np

__all__ = ["NotFittedError", "check_array", "check_is_fitted", "check_positive", "check_integer",
           "check_layer_widths",
           "check_option", "check_random_state", "largest_magnitude"]

# Finiteness is checked in row chunks so a large (possibly memory-mapped) input
# never needs a full-size boolean temporary.
_CHECK_CHUNK_ELEMENTS = 1 << 22


class NotFittedError(ValueError, AttributeError):
    """Raised when an estimator is used before ``fit``.

    Subclasses both ``ValueError`` and ``AttributeError``, like scikit-learn's, so
    ``hasattr``-style probing and ``except ValueError`` both behave. When
    scikit-learn is loaded, the error raised by :func:`check_is_fitted` is also a
    ``sklearn.exceptions.NotFittedError`` (see there).
    """


def check_is_fitted(estimator, attribute="n_features_in_"):
    """Raise :class:`NotFittedError` unless ``estimator`` has ``attribute`` (set by ``fit``).

    If the program has imported scikit-learn, the error is an instance of a subclass
    of both npclust's and scikit-learn's ``NotFittedError``, so code written for
    either library (``GridSearchCV``, ``except sklearn.exceptions.NotFittedError``)
    catches it. scikit-learn is never imported here: a program that has not imported
    it cannot be catching its exception.

    Parameters
    ----------
    estimator : object
    attribute : str, default="n_features_in_"
    """
    if not hasattr(estimator, attribute):
        raise _not_fitted_error_class()(
            f"this {type(estimator).__name__} instance is not fitted yet; call fit first"
        )


def _not_fitted_error_class():
    global _SklearnNotFittedError
    if _SklearnNotFittedError is None and "sklearn" in sys.modules:
        try:
            from sklearn.exceptions import NotFittedError as sklearn_not_fitted
        except ImportError:  # a partial or broken installation: npclust's error alone
            return NotFittedError
        _SklearnNotFittedError = type("NotFittedError", (NotFittedError, sklearn_not_fitted), {
            "__module__": __name__, "__qualname__": "_SklearnNotFittedError",
            "__doc__": NotFittedError.__doc__})
    return _SklearnNotFittedError or NotFittedError


# Created on first use when scikit-learn is loaded; a module attribute so it pickles.
_SklearnNotFittedError = None


def check_array(X, name="X", dtype=np.float32, min_samples=1, n_features=None,
                estimator_name=None):
    """Validate a 2-D numeric data matrix and return it as ``dtype``.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        Lists, NumPy arrays, memory maps and objects with ``__array__`` (pandas)
        are accepted. Integer, boolean and float16 input is converted, and so is an
        object array whose entries all convert with ``float`` (e.g. a DataFrame with
        mixed column types).
    name : str
        Used in error messages.
    dtype : numpy dtype, default=np.float32
    min_samples : int, default=1
    n_features : int or None
        If given, the number of columns the data must have (e.g. the number seen
        in ``fit``).
    estimator_name : str or None
        The estimator expecting ``n_features`` columns, named in the message.

    Returns
    -------
    ndarray of shape (n_samples, n_features) and dtype ``dtype``
        ``X`` itself (no copy) when it already has the right dtype, which keeps a
        read-only memory map a memory map.

    Raises
    ------
    TypeError
        ``None``, sparse matrices, string data, object data with an entry that is
        not a number.
    ValueError
        Complex data, wrong number of dimensions, too few samples, zero features, a
        feature count other than ``n_features``, NaN or infinity, a finite value
        too large for ``dtype`` (e.g. 1e39 for float32), masked entries.

    Notes
    -----
    The messages use scikit-learn's wording where it has one ("Complex data not
    supported", "1 sample(s) (shape=(1, 4)) while a minimum of 2 is required",
    "X has 3 features, but KMeans is expecting 4 features as input"), which its
    estimator checks look for.
    """
    if X is None:
        raise TypeError(f"{name} is None; expected an array of shape (n_samples, n_features)")
    # Looked up on the type: a DataFrame answers hasattr() with its columns.
    if hasattr(type(X), "tocsr") or hasattr(type(X), "toarray"):
        raise TypeError(
            f"{name} is a sparse matrix; npclust needs dense data, "
            f"convert it with {name}.toarray() if it fits in memory"
        )
    if isinstance(X, np.ma.MaskedArray):
        if np.ma.getmaskarray(X).any():
            raise ValueError(f"{name} is a masked array with masked entries; fill or drop them first")
        X = X.data
    if isinstance(X, np.matrix):
        X = np.asarray(X)  # np.matrix keeps reductions 2-D, which breaks row-wise results
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{name} could not be converted to a numeric array: {error}") from None
    if X.dtype.kind == "c":
        raise ValueError(
            f"Complex data not supported: {name} has dtype {X.dtype}; npclust needs real numbers"
        )
    if X.dtype.kind not in "biufO":
        raise TypeError(
            f"{name} has non-numeric dtype {X.dtype}; npclust needs a numeric array "
            "(strings are not parsed as numbers)"
        )
    if X.ndim != 2:
        hint = (
            f". Reshape your data either using {name}.reshape(-1, 1) if it has a single "
            f"feature or {name}.reshape(1, -1) if it is a single sample"
        ) if X.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D of shape (n_samples, n_features), got {X.ndim}-D "
            f"array of shape {X.shape}{hint}"
        )
    n_samples, n_columns = X.shape
    if n_samples < min_samples:
        raise ValueError(
            f"{name} has {n_samples} sample(s) (shape={X.shape}) while a minimum of "
            f"{min_samples} is required."
        )
    if n_columns == 0:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if n_features is not None and n_columns != n_features:
        raise ValueError(
            f"{name} has {n_columns} features, but {estimator_name or 'the estimator'} is "
            f"expecting {n_features} features as input (the number it was fitted with)"
        )
    original = X
    if X.dtype.kind == "O":
        X = _object_to_numbers(X, name, dtype)
    elif X.dtype != dtype:
        # Finite values beyond dtype's range become inf; _check_finite names them.
        with np.errstate(over="ignore"):
            X = X.astype(dtype)
    _check_finite(X, name, original)
    return X


def _object_to_numbers(X, name, dtype):
    """An object array converted by NumPy (as ``float(entry)``), or an error naming the
    first entry that is a string, does not convert, or is too large for any float."""
    is_text = np.frompyfunc(lambda value: isinstance(value, (str, bytes)), 1, 1)(X).astype(bool)
    if is_text.any():
        # String arrays are refused; strings inside an object array are too, rather
        # than parsed silently (a CSV column read as text stays a mistake to fix).
        row, column = np.argwhere(is_text)[0]
        raise TypeError(
            f"{name} has dtype object and an entry that is not a number but a string (first "
            f"at row {row}, column {column}: {_short(X[row, column])}); npclust does not parse "
            "strings as numbers, convert the column first (e.g. pandas.to_numeric)"
        )
    try:
        with np.errstate(over="ignore"):  # overflow is reported by _check_finite
            return X.astype(dtype)
    except OverflowError:
        # A Python int beyond any float (10**400): NumPy cannot even make it inf.
        for (row, column), value in np.ndenumerate(X):
            try:
                float(value)
            except OverflowError:
                break
        raise ValueError(
            f"{name} has a value too large for {np.dtype(dtype)} (first at row {row}, column "
            f"{column}: {_short(value)}); rescale the data"
        ) from None
    except (TypeError, ValueError) as error:
        for (row, column), value in np.ndenumerate(X):
            try:
                float(value)
            except (TypeError, ValueError):
                break
        raise TypeError(
            f"{name} has dtype object and an entry that is not a number (first at row "
            f"{row}, column {column}: {_short(value)}): {error}"
        ) from None


def _short(value, limit=40):
    """``value`` as text (quoted if it is a string) cut to ``limit`` characters, so a
    400-digit int stays readable."""
    text = repr(value) if isinstance(value, (str, bytes)) else str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _finite_in_its_own_type(value):
    """Whether ``value`` is a finite number as it stands, before conversion to a float:
    ``Decimal('1E+400')`` and ``10**400`` are finite although ``float()`` of them is not."""
    is_finite = getattr(value, "is_finite", None)  # Decimal
    if callable(is_finite):
        return bool(is_finite())
    if isinstance(value, numbers.Rational):  # Python ints, Fractions
        return True
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError, OverflowError):
        return False


def _check_finite(X, name, original=None):
    """Raise at the first NaN or infinity of ``X``; ``original`` is the input before
    conversion, to tell a value that overflowed ``X.dtype`` from a non-finite one."""
    rows_per_chunk = max(1, _CHECK_CHUNK_ELEMENTS // X.shape[1])
    for start in range(0, X.shape[0], rows_per_chunk):
        chunk = X[start:start + rows_per_chunk]
        if not np.isfinite(chunk).all():
            bad = np.argwhere(~np.isfinite(chunk))[0]
            row, column = start + bad[0], bad[1]
            if original is not None and original is not X:
                value = original[row, column]
                if _finite_in_its_own_type(value):
                    raise ValueError(
                        f"{name} has a value too large for {X.dtype} (first at row {row}, "
                        f"column {column}: {_short(value)}; the largest {X.dtype} is "
                        f"{np.finfo(X.dtype).max:.4g}); rescale the data"
                        + (" or use dtype='float64'" if X.dtype != np.float64 else "")
                    )
            raise ValueError(
                f"{name} contains NaN or infinity (first at row {row}, column {column}: "
                f"{X[row, column]})"
            )


def check_integer(value, name, minimum=None, maximum=None):
    """Return ``value`` as an int, or raise naming ``name`` and the allowed range.

    Parameters
    ----------
    value : object
    name : str
        The parameter's name, for the message.
    minimum, maximum : int or None, default=None
        Inclusive bounds.

    Returns
    -------
    int
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (
            f">= {minimum}" if maximum is None
            else f"<= {maximum}" if minimum is None
            else f"in [{minimum}, {maximum}]"
        )
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def check_positive(value, name, allow_zero=False):
    """Return ``value`` as a float, or raise if it is not a finite positive number.

    Parameters
    ----------
    value : object
    name : str
        The parameter's name, for the message.
    allow_zero : bool, default=False

    Returns
    -------
    float
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        requirement = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {requirement} number, got {value}")
    return value


def check_option(value, name, options):
    """Return ``value`` if it is one of ``options``, else raise listing the valid ones.

    Parameters
    ----------
    value : object
    name : str
        The parameter's name, for the message.
    options : sequence

    Returns
    -------
    object
    """
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; valid values are {sorted(options)}")
    return value


def check_layer_widths(value, name):
    """Return ``value`` (hidden layer widths) as a tuple of positive ints, else raise naming it.

    Parameters
    ----------
    value : object
    name : str
        The parameter's name, for the message.

    Returns
    -------
    tuple of int
    """
    if (not isinstance(value, (tuple, list))
            or any(isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1
                   for width in value)):
        raise ValueError(f"{name} must be a tuple of positive integers, got {value!r}")
    return tuple(int(width) for width in value)


def check_random_state(seed):
    """Return a :class:`numpy.random.Generator` for a ``random_state`` argument.

    Parameters
    ----------
    seed : None, int or numpy.random.Generator
        ``None`` gives a fresh generator seeded from the operating system's entropy;
        a non-negative int (Python or NumPy integer) gives ``np.random.default_rng(seed)``,
        so the same int always reproduces the same stream; a Generator is returned
        as is (not copied), so drawing from the result advances the caller's generator.

    Returns
    -------
    rng : numpy.random.Generator

    Raises
    ------
    TypeError
        If `seed` is of any other type. ``bool`` is rejected although it is an int
        subclass, because ``random_state=True`` is almost certainly a mistake.
        The legacy ``numpy.random.RandomState`` is rejected too: its streams differ
        from Generator's, so accepting it would silently change results.
    ValueError
        If `seed` is a negative integer (``default_rng`` cannot use it).

    Examples
    --------
    >>> from npclust.validation import check_random_state
    >>> a = check_random_state(0).standard_normal(3)
    >>> b = check_random_state(0).standard_normal(3)
    >>> bool((a == b).all())
    True
    """
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            "random_state must be None, a non-negative int or a numpy.random.Generator, "
            f"got {type(seed).__name__}: {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"random_state must be a non-negative int, got {seed}")
    return np.random.default_rng(int(seed))


def largest_magnitude(*arrays):
    """``max(|x|)`` over the elements of ``arrays`` as a Python float (0.0 if all are empty).

    Taken as ``max(X.max(), -X.min())``, without the temporary array ``np.abs(X)``
    would allocate: the range checks that call it run on whole, possibly memory-mapped,
    data sets.

    Parameters
    ----------
    *arrays : ndarray

    Returns
    -------
    float
    """
    return max((max(float(a.max()), -float(a.min())) for a in arrays if a.size), default=0.0)
