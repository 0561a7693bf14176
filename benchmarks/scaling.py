"""IMSAT fit time per epoch against the number of samples, and the VAT neighbour search.

For each n the script fits IMSAT (VAT on, as by default) on synthetic 784-dimensional
float32 data and reports

* the neighbour search (``npclust.neighbors.kth_neighbor_distance``, the distance to
  the 10th nearest neighbour that sets the VAT radius): a one-off O(n^2 d) cost, one
  GEMM per square tile of pairs, next to its **GEMM floor** (the same tile products,
  timed alone in the same run);
* the time per training epoch (from ``history_``'s elapsed times): O(n), so the
  time per 10,000 samples should stay flat.

Examples::

    OPENBLAS_NUM_THREADS=1 python benchmarks/scaling.py --quick
    python benchmarks/scaling.py --json scaling.json        # n = 10k, 20k, 40k, 70k
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe, environment, synthetic_digits_like, write_json  # noqa: E402

import npclust.neighbors  # noqa: E402
from npclust.cluster import IMSAT  # noqa: E402


def timed_neighbor_search(record):
    """Patch the neighbour search so that each call's duration lands in ``record``."""
    original = npclust.neighbors.kth_neighbor_distance

    def kth_neighbor_distance(*args, **kwargs):
        start = time.perf_counter()
        result = original(*args, **kwargs)
        record.append(time.perf_counter() - start)
        return result

    npclust.neighbors.kth_neighbor_distance = kth_neighbor_distance
    return original


def neighbor_search_gemm_floor(X):
    """Seconds for the search's matrix products alone: the tiles ``X_I X_J^T``, J >= I,
    of ``npclust.neighbors``' symmetric search (k = 10), with the same shapes."""
    tile_rows = min(npclust.neighbors._TILE_ROWS, X.shape[0])
    tile = np.empty((tile_rows, tile_rows), dtype=X.dtype)
    starts = range(0, X.shape[0], tile_rows)
    start = time.perf_counter()
    for row_start in starts:
        rows = X[row_start:row_start + tile_rows]
        for column_start in range(row_start, X.shape[0], tile_rows):
            columns = X[column_start:column_start + tile_rows]
            np.matmul(rows, columns.T, out=tile[:len(rows), :len(columns)])
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 40_000, 70_000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-vat", action="store_true", help="no VAT term, no neighbour search")
    parser.add_argument("--quick", action="store_true", help="n = 2.5k, 5k, 10k, one epoch")
    parser.add_argument("--json", default="scaling.json", help="output file ('' for none)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.epochs = [2_500, 5_000, 10_000], 1

    info = environment()
    print(describe(info))
    searches = []
    original = timed_neighbor_search(searches)
    rows = []
    header = (f"{'n':>7} {'neighbour search':>17} {'GEMM floor':>11} {'ratio':>6} "
              f"{'per 1e8 pairs':>14} {'epoch':>9} "
              f"{'epoch per 10k':>14} {'steps/s':>8}")
    print(header + "\n" + "-" * len(header))
    try:
        for n_samples in args.sizes:
            X, _ = synthetic_digits_like(n_samples)
            searches.clear()
            model = IMSAT(n_clusters=10, epochs=args.epochs, vat=not args.no_vat, random_state=0)
            model.fit(X)
            elapsed = [entry["elapsed"] for entry in model.history_]
            epochs = np.diff([0.0] + elapsed)
            epoch = float(np.median(epochs))
            search = searches[0] if searches else float("nan")
            floor = neighbor_search_gemm_floor(X) if searches else float("nan")
            steps = int(np.ceil(n_samples / model.batch_size))
            row = {"n": n_samples, "neighbour_search_s": search,
                   "neighbour_search_gemm_floor_s": floor, "epoch_s": epoch,
                   "epochs_s": epochs.tolist(), "epoch_per_10k_s": epoch * 1e4 / n_samples,
                   "steps_per_s": steps / epoch,
                   "search_per_1e8_pairs_s": search / (n_samples ** 2 / 1e8)}
            rows.append(row)
            print(f"{n_samples:7d} {search:16.2f}s {floor:10.2f}s {search / floor:6.2f} "
                  f"{row['search_per_1e8_pairs_s']:13.3f}s "
                  f"{epoch:8.2f}s {row['epoch_per_10k_s']:13.2f}s {row['steps_per_s']:8.1f}",
                  flush=True)
    finally:
        npclust.neighbors.kth_neighbor_distance = original
    print("(epoch includes training steps only; the neighbour search runs once per fit)")
    write_json(args.json, {"environment": info, "epochs": args.epochs, "vat": not args.no_vat,
                           "results": rows})
    return rows


if __name__ == "__main__":
    main()
