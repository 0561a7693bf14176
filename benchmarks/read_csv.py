"""Reading data files as a new user would: ``npclust.files.matrix.read_matrix`` on a CSV,
an ``.npy`` and an ``.npz`` of the same synthetic 70,000 x 784 data.

The CSV is written with ``np.savetxt`` (``%.6g``, comma-separated, no header) into a
temporary folder, as a user's export would look; each format is read ``--rounds``
times and the median is reported with the file size and the throughput.

    python benchmarks/read_csv.py --n 70000
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe, environment, synthetic_digits_like  # noqa: E402

from npclust.files.matrix import read_matrix  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=70_000, help="rows of the synthetic data")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(describe(environment()))
    X, _ = synthetic_digits_like(args.n)
    with tempfile.TemporaryDirectory() as directory:
        paths = {name: os.path.join(directory, f"data.{name}") for name in ("csv", "npy", "npz")}
        np.savetxt(paths["csv"], X, fmt="%.6g", delimiter=",")
        np.save(paths["npy"], X)
        np.savez(paths["npz"], X=X)
        for name, path in paths.items():
            seconds = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                data = np.asarray(read_matrix(path))
                seconds.append(time.perf_counter() - start)
            assert data.shape == X.shape
            size = os.path.getsize(path) / 1e6
            median = statistics.median(seconds)
            print(f"{name}: {X.shape[0]} x {X.shape[1]}, {size:.0f} MB, median {median:.2f} s "
                  f"({size / median:.0f} MB/s) over {args.rounds} reads")


if __name__ == "__main__":
    main()
