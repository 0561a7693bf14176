"""Peak memory of IMSAT training and prediction, beyond the input's own size.

Measures with ``tracemalloc``, which sees NumPy's array allocations: the data set
is created (or memory-mapped) first, then tracing starts, so the reported peak is
what ``fit`` / ``predict`` allocate on top of the input. Issue 7's target: under
300 MB for both on 70,000 x 784 float32 data.

Runs:

* ``fit``: one IMSAT epoch with VAT (the neighbour search for the VAT radius, one
  pass of mini-batch training, the per-epoch evaluation and the final labelling);
* ``predict``: labels for all samples with the fitted model.

``--mmap`` stores the data in a temporary ``.npy`` file and passes the read-only
memory map (``np.load(path, mmap_mode="r")``), as a user with data larger than
memory would.

Examples::

    OPENBLAS_NUM_THREADS=1 python benchmarks/memory.py --n 10000
    python benchmarks/memory.py --json memory.json          # the full 70,000 x 784
"""

import argparse
import os
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe, environment, synthetic_digits_like, write_json  # noqa: E402

from npclust.cluster import IMSAT  # noqa: E402

MB = 1024.0 ** 2


def traced(function):
    """``(result, peak bytes allocated while it ran, seconds)``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        result = function()
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    return result, peak, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=70_000, help="number of samples")
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--no-vat", action="store_true",
                        help="train without VAT (no neighbour search)")
    parser.add_argument("--mmap", action="store_true",
                        help="pass the data as a read-only np.memmap")
    parser.add_argument("--json", default="memory.json", help="output file ('' for none)")
    args = parser.parse_args(argv)

    info = environment()
    print(describe(info))
    X, labels = synthetic_digits_like(args.n, args.features)
    input_mb = X.nbytes / MB
    tmpdir = None
    if args.mmap:
        tmpdir = tempfile.TemporaryDirectory()
        path = os.path.join(tmpdir.name, "X.npy")
        np.save(path, X)
        del X
        X = np.load(path, mmap_mode="r")
    print(f"data: {X.shape[0]} x {X.shape[1]} {X.dtype} ({input_mb:.0f} MB"
          f"{', memory-mapped read-only' if args.mmap else ''})")

    model = IMSAT(n_clusters=10, epochs=1, batch_size=args.batch_size, vat=not args.no_vat,
                  random_state=0)
    _, fit_peak, fit_seconds = traced(lambda: model.fit(X))
    predicted, predict_peak, predict_seconds = traced(lambda: model.predict(X))
    assert np.array_equal(predicted, model.labels_)

    rows = [
        {"run": "fit (1 epoch" + (", VAT" if not args.no_vat else "") + ")",
         "peak_mb": fit_peak / MB, "seconds": fit_seconds},
        {"run": "predict", "peak_mb": predict_peak / MB, "seconds": predict_seconds},
    ]
    print(f"\n{'run':<22} {'peak beyond input':>18} {'time':>9}")
    for row in rows:
        print(f"{row['run']:<22} {row['peak_mb']:15.1f} MB {row['seconds']:8.2f}s")
    print(f"(input itself: {input_mb:.1f} MB; target: peak beyond input < 300 MB)")
    write_json(args.json, {"environment": info, "n_samples": args.n, "n_features": args.features,
                           "input_mb": input_mb, "mmap": args.mmap, "vat": not args.no_vat,
                           "results": rows})
    if tmpdir is not None:
        del X
        tmpdir.cleanup()
    return rows


if __name__ == "__main__":
    main()
