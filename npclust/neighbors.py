"""Distance from every sample to its k-th nearest other sample, without an n x n matrix.

IMSAT perturbs each sample within a radius proportional to the distance to its 10th
nearest neighbour, on data as large as MNIST (70,000 x 784). The exact answer needs
all n^2 pairwise distances, but never all at once. For the small k IMSAT uses, the
search walks over square tiles of pairs, each computed once by a matrix product
(BLAS, all cores) and used for both of its row blocks; every row keeps its k best
candidates so far, and a tile's entries are examined only where they beat them. For
large k, rows are processed in chunks against all samples instead.

:func:`nearest_neighbors` answers the other question a fitted model asks: which rows
of a reference set (the training samples) lie nearest to each new sample.
"""

import numpy as np

from .scaling import SQUARED_DISTANCE_RANGE, power_of_two_scale
from .validation import check_array, check_integer

__all__ = ["kth_neighbor_distance", "nearest_neighbors"]

# Target size of one chunk's block of scores (chunk_size x n) in the row-chunk search.
# Large enough that the matrix product runs at full BLAS speed, small enough to stay
# out of the way.
_BLOCK_BYTES = 64 << 20

# Row-wise passes over X (half squared norms, differences to the selected neighbours)
# take this many bytes of rows at a time.
_DIFFERENCE_BYTES = 2 << 20

# Rows per tile of the symmetric search: a 1024 x 1024 x 784 product runs at full BLAS
# speed, and the tile's scores (4 MB in float32) stay in the last-level cache for the
# passes that filter them.
_TILE_ROWS = 1024

# The symmetric search keeps n x k candidate scores and indices; beyond this k the
# row-chunk search, whose memory does not grow with k, takes over.
_MAX_K_SYMMETRIC = 64

# nearest_neighbors scores this many query rows at a time against blocks of reference
# rows; a block of scores (float64) takes about _BLOCK_BYTES / 2.
_QUERY_ROWS = 1024



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
        Rows per block. For ``k <= 64`` the side of the square tiles of pairs (None:
        1024); for larger k the rows processed at once against all samples (None:
        the number whose block of scores takes about 64 MB).
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
        If `k` is outside ``[1, n_samples - 1]``, `chunk_size` is smaller than 1, `X`
        is not a finite 2-D array, or a distance exceeds the computation dtype's range
        (float32 data near 1e38). Data at any other scale are searched exactly (see
        Precision).

    Notes
    -----
    **Scores.** The squared distances follow from matrix products,

    .. math:: \|x_i - x_j\|^2 = \|x_i\|^2 - 2\, x_i \cdot x_j + \|x_j\|^2 .

    Within row ``i`` the term :math:`\|x_i\|^2` is a constant, so neighbours are
    ranked by the score :math:`s_{ij} = \|x_j\|^2 / 2 - x_i \cdot x_j` alone. Pairs
    of a row with itself get :math:`+\infty`, which excludes the sample itself even
    when duplicates tie with it.

    **Symmetric tiles** (``k <= 64``). The product :math:`x_i \cdot x_j` is the same
    for both rows of a pair, so each tile :math:`S = X_I X_J^T` (row blocks
    ``I < J``) is computed once and serves rows I (scores :math:`\|x_j\|^2/2 -
    S_{ij}`) and rows J (:math:`\|x_i\|^2/2 - S_{ij}`, read down the columns): half
    the flops of ranking every row against all samples. Every row keeps its k best
    candidates, seeded from its own block's diagonal tile; from a tile only the
    entries below a row's current k-th best score are merged, found by one
    comparison pass. After a few tiles such entries are rare, so the filtering costs
    a few vectorised passes per tile. Blocks are centred (see Precision) as the
    tiles use them. Memory: :math:`O(\text{chunk\_size} \cdot (\text{chunk\_size} + d))`
    for the tiles and blocks plus ``n x k`` candidates; no copy of `X`.

    **Row chunks** (``k > 64``). Each chunk of rows is scored against all samples by
    one GEMM into a preallocated block. Selecting the k-th smallest of each row with
    ``np.partition`` would cost about as much again as the GEMM, so the selection
    first groups the columns into ``g ~ sqrt(n / k)`` interleaved groups per row and
    takes each group's minimum (one vectorised pass). The k groups with the smallest
    minima contain the k smallest entries of the row: any entry outside them is
    preceded by the k minima of the chosen groups. Only those ``k g`` candidates are
    partitioned. The diagonal tiles of the symmetric search use the same selection.
    Memory: one centred copy of `X` plus :math:`O(\text{chunk\_size} \cdot n)`,
    whatever k.

    **Precision.** The identity loses precision to cancellation when two samples are
    close compared with their norms. The data are therefore centred first (distances
    do not change, the norms shrink), and the distance to the selected neighbour is
    recomputed directly as ``||x_i - x_j||`` from the original rows: duplicates give
    exactly 0, and only the choice among near-ties depends on the rounding of the
    GEMM (so float32 results may differ from float64 ones by that rounding). Data whose
    squared norms would overflow or underflow the dtype (float32 beyond about 1e19 or
    below 1e-19) are first multiplied by a power of two, which is exact: the choices are
    those at unit scale, and the distances are scaled back exactly.

    **Cost.** :math:`O(n^2 d)` floating-point work: ``n^2 d`` flops for symmetric
    tiles, ``2 n^2 d`` for row chunks. No ``n x n`` array is formed.

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
    if chunk_size is not None:
        chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)

    # float32 data near 1e-25 would underflow in the squared norms (every distance 0) and
    # data near 1e25 overflow; scaled by a power of two, which is exact, the search makes
    # the choices it makes in range, and the distances scale back exactly.
    scale = power_of_two_scale(X, safe_range=SQUARED_DISTANCE_RANGE[X.dtype])
    if scale != 1.0:
        X = X * X.dtype.type(scale)

    # Distances are translation invariant, but the rounding error of the score identity
    # scales with the squared norms: centring keeps offset data (every feature near
    # 1e4, say) rankable in float32. The subtraction is exact for such data (Sterbenz).
    mean = X.mean(axis=0, dtype=np.float64).astype(dtype)
    half_sq_norms = _half_squared_norms(X, mean)
    if k <= _MAX_K_SYMMETRIC:
        neighbors = _symmetric_search(X, mean, half_sq_norms, k, chunk_size or _TILE_ROWS)
    else:
        neighbors = _row_chunk_search(X - mean, half_sq_norms, k, chunk_size)

    distances = np.empty(n_samples, dtype=dtype)
    rows_per_pass = _rows_per_pass(X)
    difference_buffer = np.empty((min(rows_per_pass, n_samples), X.shape[1]), dtype=dtype)
    for start in range(0, n_samples, rows_per_pass):
        stop = min(start + rows_per_pass, n_samples)
        difference = np.subtract(X[start:stop], X[neighbors[start:stop]],
                                 out=difference_buffer[:stop - start])
        distances[start:stop] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
    if scale != 1.0:
        with np.errstate(over="ignore"):
            distances /= X.dtype.type(scale)
        if not np.all(np.isfinite(distances)):
            raise ValueError(f"X is too large for distances in {X.dtype.name}: they overflow "
                             "(largest distance beyond the dtype's range); use float64")
    if return_indices:
        return distances, neighbors
    return distances


def _rows_per_pass(X):
    """Rows of ``X`` per pass of the row-wise loops, about ``_DIFFERENCE_BYTES``."""
    return max(1, _DIFFERENCE_BYTES // (X.shape[1] * X.itemsize))


def _half_squared_norms(X, mean):
    """Half the squared norm of each row of ``X - mean``, computed a block at a time."""
    half_sq_norms = np.empty(X.shape[0], dtype=X.dtype)
    rows_per_pass = _rows_per_pass(X)
    for start in range(0, X.shape[0], rows_per_pass):
        centered = X[start:start + rows_per_pass] - mean
        half_sq_norms[start:start + rows_per_pass] = 0.5 * np.einsum(
            "ij,ij->i", centered, centered)
    return half_sq_norms


def _group_size(width, k):
    """Columns per interleaved group: g = sqrt(width / k) balances the two selections
    of :func:`_smallest_columns` (width / g minima, k g candidates)."""
    return max(1, int(np.sqrt(width / k)))


def _row_chunk_search(centered, half_sq_norms, k, chunk_size):
    """Index of each row's k-th nearest neighbour, one chunk of rows against all."""
    n_samples = centered.shape[0]
    group_size = _group_size(n_samples, k)
    width = group_size * -(-n_samples // group_size)
    if chunk_size is None:
        chunk_size = max(1, _BLOCK_BYTES // (width * centered.itemsize))
    chunk_size = min(chunk_size, n_samples)
    # The padding columns beyond n stay +inf for good, so they are never selected.
    block_buffer = np.full((chunk_size, width), np.inf, dtype=centered.dtype)
    neighbors = np.empty(n_samples, dtype=np.intp)
    for start in range(0, n_samples, chunk_size):
        stop = min(start + chunk_size, n_samples)
        rows = np.arange(stop - start)
        block = block_buffer[:stop - start]
        scores = block[:, :n_samples]
        np.matmul(centered[start:stop], centered.T, out=scores)
        np.subtract(half_sq_norms, scores, out=scores)
        scores[rows, start + rows] = np.inf
        neighbors[start:stop] = _smallest_columns(block, k, group_size)[:, k - 1]
    return neighbors


def _symmetric_search(X, mean, half_sq_norms, k, tile_rows):
    """Index of each row's k-th nearest neighbour, each pair's product computed once.

    The rows are cut into blocks of `tile_rows`. First each diagonal tile (a block
    against itself) gives every row its k best candidates within its own block.
    Then each off-diagonal tile ``S = X_I X_J^T`` serves twice: as the scores of rows
    I against columns J, and transposed as those of rows J against columns I. Only
    the entries below a row's current k-th best score can change its candidates;
    after the first tiles these are few, so the filtering costs a few vectorised
    passes over the tile and the merging almost nothing.

    Blocks are centred as they are used (``X - mean``, a pass over ``tile_rows x d``
    entries per tile, about 3% of its product), so memory stays bounded by the tile
    size instead of holding a centred copy of `X`.
    """
    n_samples, n_features = X.shape
    dtype = X.dtype
    tile_rows = min(tile_rows, n_samples)
    row_block = np.empty((tile_rows, n_features), dtype=dtype)
    column_block = np.empty((tile_rows, n_features), dtype=dtype)

    def centered_rows(start, stop, block):
        return np.subtract(X[start:stop], mean, out=block[:stop - start])

    starts = list(range(0, n_samples, tile_rows))
    best_scores = np.full((n_samples, k), np.inf, dtype=dtype)
    best_columns = np.zeros((n_samples, k), dtype=np.intp)

    group_size = _group_size(tile_rows, k)
    width = group_size * -(-tile_rows // group_size)
    diagonal_buffer = np.full((tile_rows, width), np.inf, dtype=dtype)
    for start in starts:
        stop = min(start + tile_rows, n_samples)
        size = stop - start
        block = diagonal_buffer[:size]
        scores = block[:, :size]
        rows = centered_rows(start, stop, row_block)
        np.matmul(rows, rows.T, out=scores)
        np.subtract(half_sq_norms[start:stop], scores, out=scores)
        scores[np.arange(size), np.arange(size)] = np.inf
        # The columns beyond this block's size may hold the previous block's scores.
        block[:, size:] = np.inf
        found = min(k, size - 1)
        if found:
            columns = _smallest_columns(block, found, group_size)
            best_scores[start:stop, :found] = np.take_along_axis(block, columns, axis=1)
            best_columns[start:stop, :found] = columns + start
    # A row's current k-th best score (+inf while it has fewer than k candidates).
    thresholds = best_scores.max(axis=1)

    product = np.empty((tile_rows, tile_rows), dtype=dtype)
    scores = np.empty_like(product)
    for position, row_start in enumerate(starts):
        row_stop = min(row_start + tile_rows, n_samples)
        rows = centered_rows(row_start, row_stop, row_block)
        for column_start in starts[position + 1:]:
            column_stop = min(column_start + tile_rows, n_samples)
            tile = product[:row_stop - row_start, :column_stop - column_start]
            np.matmul(rows, centered_rows(column_start, column_stop, column_block).T, out=tile)
            tile_scores = scores[:tile.shape[0], :tile.shape[1]]
            # Rows I against columns J: ||x_j||^2 / 2 - x_i . x_j.
            np.subtract(half_sq_norms[column_start:column_stop], tile, out=tile_scores)
            local_rows, local_columns = _entries_below(
                tile_scores, thresholds[row_start:row_stop, None])
            _merge_candidates(best_scores, best_columns, thresholds, row_start + local_rows,
                              column_start + local_columns, tile_scores[local_rows, local_columns])
            # Rows J against columns I: ||x_i||^2 / 2 - x_i . x_j, read down the columns.
            np.subtract(half_sq_norms[row_start:row_stop, None], tile, out=tile_scores)
            local_rows, local_columns = _entries_below(
                tile_scores, thresholds[column_start:column_stop])
            _merge_candidates(best_scores, best_columns, thresholds,
                              column_start + local_columns, row_start + local_rows,
                              tile_scores[local_rows, local_columns])

    # The k-th nearest is the worst of the k best.
    return best_columns[np.arange(n_samples), np.argmax(best_scores, axis=1)]


def _entries_below(scores, thresholds):
    """Row and column indices of the entries of 2-D `scores` below `thresholds`
    (broadcast against it). Via the flat indices: for a sparse result ``np.nonzero``
    on a 2-D mask is about 6 times slower than ``np.flatnonzero`` on NumPy 2.4."""
    return np.divmod(np.flatnonzero(scores < thresholds), scores.shape[1])


def _merge_candidates(best_scores, best_columns, thresholds, rows, columns, scores):
    """Merge new candidate pairs into each row's k best, in place, and update the
    rows' thresholds. ``rows`` may repeat and come in any order."""
    if rows.size == 0:
        return
    k = best_scores.shape[1]
    order = np.argsort(rows, kind="stable")
    rows, columns, scores = rows[order], columns[order], scores[order]
    unique_rows, first, counts = np.unique(rows, return_index=True, return_counts=True)
    # One row of the pool per affected row: its k best, then its new candidates, padded
    # with +inf to the largest number of new candidates.
    pool_scores = np.full((unique_rows.size, k + counts.max()), np.inf, dtype=best_scores.dtype)
    pool_columns = np.zeros(pool_scores.shape, dtype=np.intp)
    pool_scores[:, :k] = best_scores[unique_rows]
    pool_columns[:, :k] = best_columns[unique_rows]
    slot = np.repeat(np.arange(unique_rows.size), counts)
    offset = k + np.arange(rows.size) - np.repeat(first, counts)
    pool_scores[slot, offset] = scores
    pool_columns[slot, offset] = columns
    keep = np.argpartition(pool_scores, k - 1, axis=1)[:, :k]
    best_scores[unique_rows] = np.take_along_axis(pool_scores, keep, axis=1)
    best_columns[unique_rows] = np.take_along_axis(pool_columns, keep, axis=1)
    thresholds[unique_rows] = best_scores[unique_rows].max(axis=1)


def _smallest_columns(block, m, group_size):
    """Column indices of the m smallest entries of each row of `block`; column
    ``m - 1`` of the result holds the m-th smallest, the others are unordered.

    `block` has ``group_size * n_groups`` columns; group ``r`` of a row is its columns
    ``r, r + n_groups, ...``, so the group minima are one reduction over the middle
    axis of a reshaped view, vectorised along contiguous memory. The m groups with
    the smallest minima hold the m smallest entries of the row.
    """
    if group_size == 1:
        return np.argpartition(block, m - 1, axis=1)[:, :m]
    n_rows, width = block.shape
    n_groups = width // group_size
    group_minima = block.reshape(n_rows, group_size, n_groups).min(axis=1)
    best_groups = np.argpartition(group_minima, m - 1, axis=1)[:, :m]
    offsets = n_groups * np.arange(group_size)
    candidates = (best_groups[:, :, None] + offsets).reshape(n_rows, m * group_size)
    values = np.take_along_axis(block, candidates, axis=1)
    smallest = np.argpartition(values, m - 1, axis=1)[:, :m]
    return np.take_along_axis(candidates, smallest, axis=1)


def nearest_neighbors(queries, reference, n_neighbors):
    r"""Indices of the ``n_neighbors`` rows of ``reference`` nearest to each row of ``queries``.

    Parameters
    ----------
    queries : array_like of shape (n_queries, n_features)
    reference : array_like of shape (n_reference, n_features)
    n_neighbors : int
        In ``[1, n_reference]``.

    Returns
    -------
    ndarray of shape (n_queries, n_neighbors) of intp
        Row indices into ``reference``, nearest first (Euclidean); equal computed
        distances in index order. A query equal to a reference row finds that row
        first: unlike :func:`kth_neighbor_distance`, nothing is excluded.

    Raises
    ------
    TypeError
        If `n_neighbors` is not an integer, or an input is not numeric.
    ValueError
        If `n_neighbors` is outside ``[1, n_reference]``, the feature counts differ,
        or an input is not a finite 2-D array.

    Notes
    -----
    Reference rows are ranked for query :math:`q` by :math:`\|r\|^2/2 - q \cdot r`
    (:math:`\|q - r\|^2 / 2` less a term constant along the row), one GEMM per block
    of 1,024 queries against a block of reference rows, each query keeping its best
    ``n_neighbors`` so far. Everything is computed in float64, on data centred on the
    reference mean (as in :func:`kth_neighbor_distance`) and multiplied by the power
    of two that brings the largest absolute value into [1, 2): the factor is exact, so
    the ranking is that of the data as given, and the squared norms stay in range at
    any finite scale.

    **Cost.** :math:`O(n_q n_r d)` flops. Memory: a block of scores of about 32 MB, a
    float64 copy of one block of each input and ``n_queries x n_neighbors`` indices;
    no copy of either whole input.

    Examples
    --------
    >>> import numpy as np
    >>> from npclust.neighbors import nearest_neighbors
    >>> reference = np.array([[0.0], [1.0], [3.0], [7.0]])
    >>> nearest_neighbors([[2.9], [0.0]], reference, 2).tolist()
    [[2, 1], [0, 1]]
    """
    queries = _floating(queries, "queries")
    reference = _floating(reference, "reference")
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} features and reference has "
                         f"{reference.shape[1]}; they must have the same")
    n_reference = reference.shape[0]
    n_neighbors = check_integer(n_neighbors, "n_neighbors", 1, n_reference)
    scale = power_of_two_scale(queries, reference)
    mean = reference.mean(axis=0, dtype=np.float64) * scale
    reference_rows = max(1, _BLOCK_BYTES // (2 * 8 * _QUERY_ROWS))
    indices = np.empty((queries.shape[0], n_neighbors), dtype=np.intp)
    for start in range(0, queries.shape[0], _QUERY_ROWS):
        block = queries[start:start + _QUERY_ROWS].astype(np.float64) * scale - mean
        best_scores = np.empty((block.shape[0], 0))
        best_indices = np.empty((block.shape[0], 0), dtype=np.intp)
        for reference_start in range(0, n_reference, reference_rows):
            rows = reference[reference_start:reference_start + reference_rows].astype(np.float64)
            rows = rows * scale - mean
            scores = 0.5 * np.einsum("ij,ij->i", rows, rows) - block @ rows.T
            candidates = np.arange(reference_start, reference_start + rows.shape[0])
            best_scores = np.hstack([best_scores, scores])
            best_indices = np.hstack([best_indices, np.broadcast_to(candidates, scores.shape)])
            if best_scores.shape[1] > n_neighbors:
                keep = np.argpartition(best_scores, n_neighbors - 1, axis=1)[:, :n_neighbors]
                best_scores = np.take_along_axis(best_scores, keep, axis=1)
                best_indices = np.take_along_axis(best_indices, keep, axis=1)
        # Nearest first; equal scores by index, so the order does not depend on the blocks.
        order = np.lexsort((best_indices, best_scores), axis=1)
        indices[start:start + _QUERY_ROWS] = np.take_along_axis(best_indices, order, axis=1)
    return indices


def _floating(X, name):
    """``X`` validated, as float32 if it is float32 (no copy) and as float64 otherwise."""
    dtype = np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64
    return check_array(X, name=name, dtype=dtype)

