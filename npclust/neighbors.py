"""Distance from every sample to its k-th nearest other sample, without an n x n matrix.

IMSAT perturbs each sample within a radius proportional to the distance to its 10th
nearest neighbour, on data as large as MNIST (70,000 x 784). The brute-force answer
needs all n^2 pairwise distances, but never all at once: rows are processed in chunks,
each chunk's distances to every sample come from one matrix product (BLAS, all cores),
and only the selected neighbour of each row survives the chunk.
"""

import numpy as np

from .validation import check_array, check_integer

__all__ = ["kth_neighbor_distance"]

# Target size of one chunk's block of scores (chunk_size x n). Large enough that the
# matrix product runs at full BLAS speed, small enough to stay out of the way.
_BLOCK_BYTES = 64 << 20


def kth_neighbor_distance(X, k, chunk_size=None, return_indices=False):
    r"""Euclidean distance from each sample to its k-th nearest other sample.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features)
        float64 input is computed in float64, anything else in float32 (about twice
        as fast; the default dtype of npclust's networks).
    k : int
        Which neighbour, in ``[1, n_samples - 1]``. The sample itself is never its own
        neighbour, but other rows equal to it are, at distance 0.
    chunk_size : int or None, default=None
        Rows processed at once. None picks the number of rows whose block of scores
        against all samples takes about 64 MB.
    return_indices : bool, default=False
        Also return the index of the neighbour each distance was measured to.

    Returns
    -------
    distances : ndarray of shape (n_samples,)
        ``distances[i]`` is the k-th smallest of ``||X[i] - X[j]||`` over ``j != i``,
        in the computation dtype.
    indices : ndarray of shape (n_samples,) of intp
        Only if `return_indices`: the ``j`` attaining ``distances[i]``. Among tied
        neighbours any one may be returned.

    Raises
    ------
    TypeError
        If `k` or `chunk_size` is not an integer, or `X` is not numeric.
    ValueError
        If `k` is outside ``[1, n_samples - 1]``, `chunk_size` is smaller than 1, or
        `X` is not a finite 2-D array.

    Notes
    -----
    For a row chunk ``C`` the squared distances follow from one matrix product,

    .. math:: \|x_i - x_j\|^2 = \|x_i\|^2 - 2\, x_i \cdot x_j + \|x_j\|^2 .

    Within row ``i`` the term :math:`\|x_i\|^2` is a constant, so neighbours are
    ranked by the score :math:`\|x_j\|^2 / 2 - x_i \cdot x_j` alone: one GEMM into a
    preallocated block plus one broadcast subtraction. The diagonal entries (each row
    against itself) are set to :math:`+\infty`, which excludes the sample itself even
    when duplicates tie with it.

    Selecting the k-th smallest of each row with ``np.partition`` would cost about
    as much again as the GEMM (a few ns per entry against ~10 ns), so the selection
    first groups the columns into ``g ~ sqrt(n / k)`` interleaved groups per row and
    takes each group's minimum (one vectorised pass). The k groups with the smallest
    minima contain the k smallest entries of the row: any entry outside them is
    preceded by the k minima of the chosen groups. Only those ``k g`` candidates are
    partitioned.

    The identity loses precision to cancellation when two samples are close compared
    with their norms. The data are therefore centred first (distances do not change,
    the norms shrink), and the distance to the selected neighbour is recomputed
    directly as ``||x_i - x_j||`` from the original rows: duplicates give exactly 0,
    and only the choice among near-ties depends on the rounding of the GEMM.

    The cost is :math:`O(n^2 d)` floating-point work (one GEMM of the data against
    itself, ``2 n^2 d`` flops). Memory is one centred copy of `X` plus
    :math:`O(\text{chunk\_size} \cdot n)` for the block of scores and the
    selection; no ``n x n`` array is formed.

    Examples
    --------
    >>> import numpy as np
    >>> from npclust.neighbors import kth_neighbor_distance
    >>> X = np.array([[0.0], [1.0], [3.0], [3.0]])
    >>> kth_neighbor_distance(X, 1).tolist()
    [1.0, 1.0, 0.0, 0.0]
    >>> kth_neighbor_distance(X, 2).tolist()
    [3.0, 2.0, 2.0, 2.0]
    """
    dtype = np.float64 if getattr(X, "dtype", None) == np.float64 else np.float32
    X = check_array(X, dtype=dtype)
    n_samples = X.shape[0]
    k = check_integer(k, "k")
    if not 1 <= k <= n_samples - 1:
        raise ValueError(
            f"k must be in [1, n - 1] = [1, {n_samples - 1}] for X with n = {n_samples} "
            f"samples (each sample has n - 1 other samples), got k = {k}"
        )

    # Interleaved column groups: group r holds columns r, r + n_groups, r + 2 n_groups...
    # g = sqrt(n / k) balances the two selections (n / g minima, k g candidates).
    group_size = max(1, int(np.sqrt(n_samples / k)))
    n_groups = -(-n_samples // group_size)
    width = group_size * n_groups

    if chunk_size is None:
        chunk_size = max(1, _BLOCK_BYTES // (width * X.itemsize))
    else:
        chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)
    chunk_size = min(chunk_size, n_samples)

    # Distances are translation invariant, but the rounding error of the identity below
    # scales with the squared norms: centring keeps offset data (every feature near
    # 1e4, say) rankable in float32. The subtraction is exact for such data (Sterbenz).
    centered = X - X.mean(axis=0, dtype=np.float64).astype(dtype)
    with np.errstate(over="ignore"):
        half_sq_norms = 0.5 * np.einsum("ij,ij->i", centered, centered)
    if not np.all(np.isfinite(half_sq_norms)):
        # Squared norms beyond the dtype's range would turn every score into inf or NaN
        # and the neighbour choice into garbage.
        raise ValueError(
            f"X is too large for distances in {np.dtype(dtype).name}: squared norms overflow "
            f"(largest |value| {float(np.max(np.abs(X))):.3g}); rescale the data"
            + (" or use float64" if dtype == np.float32 else "")
        )
    # The padding columns beyond n stay +inf for good, so they are never selected.
    block_buffer = np.full((chunk_size, width), np.inf, dtype=dtype)
    distances = np.empty(n_samples, dtype=dtype)
    indices = np.empty(n_samples, dtype=np.intp)

    for start in range(0, n_samples, chunk_size):
        stop = min(start + chunk_size, n_samples)
        rows = np.arange(stop - start)
        block = block_buffer[:stop - start]
        scores = block[:, :n_samples]
        np.matmul(centered[start:stop], centered.T, out=scores)
        np.subtract(half_sq_norms, scores, out=scores)
        scores[rows, start + rows] = np.inf
        neighbors = _kth_smallest_column(block, k, group_size)

        difference = X[start:stop] - X[neighbors]
        distances[start:stop] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
        indices[start:stop] = neighbors

    if return_indices:
        return distances, indices
    return distances


def _kth_smallest_column(block, k, group_size):
    """Column index of the k-th smallest entry of each row of `block`.

    `block` has ``group_size * n_groups`` columns; group ``r`` of a row is its columns
    ``r, r + n_groups, ...``, so the group minima are one reduction over the middle
    axis of a reshaped view, vectorised along contiguous memory.
    """
    if group_size == 1:
        return np.argpartition(block, k - 1, axis=1)[:, k - 1]
    n_rows, width = block.shape
    n_groups = width // group_size
    group_minima = block.reshape(n_rows, group_size, n_groups).min(axis=1)
    best_groups = np.argpartition(group_minima, k - 1, axis=1)[:, :k]
    offsets = n_groups * np.arange(group_size)
    candidates = (best_groups[:, :, None] + offsets).reshape(n_rows, k * group_size)
    values = np.take_along_axis(block, candidates, axis=1)
    kth = np.argpartition(values, k - 1, axis=1)[:, k - 1:k]
    return np.take_along_axis(candidates, kth, axis=1)[:, 0]
