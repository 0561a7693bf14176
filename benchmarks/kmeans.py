"""k-means: npclust.cluster.KMeans against sklearn.cluster.KMeans, same settings, same process.

Both run Lloyd's algorithm from k-means++ seeding with the same ``n_init``,
``max_iter`` and relative ``tol`` (scikit-learn's convention, which npclust follows),
on the same data, alternating round by round so that a busy machine slows both
alike. The table gives the median fit time of each, their ratio, and both inertias,
the mean over rounds (equal inertia is part of the comparison: a faster fit to a worse
optimum is no win). Round r uses seed r for both.
Thread count: ``--threads`` limits NumPy's BLAS and scikit-learn's OpenMP pool alike
(through threadpoolctl, which scikit-learn installs).

Data: the embedded digits (1797 x 64) and synthetic digits-like data of
70,000 x 784 in float64 and float32 (``--n`` to change).

    python benchmarks/kmeans.py --threads 1 --json benchmarks/results/kmeans_1t.json
    python benchmarks/kmeans.py --threads 2 --rounds 3
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe, environment, synthetic_digits_like, write_json  # noqa: E402

from npclust.cluster import KMeans  # noqa: E402
from npclust.datasets import load_digits  # noqa: E402


def datasets(n_samples):
    digits, _ = load_digits()
    synthetic, _ = synthetic_digits_like(n_samples)
    return {
        "digits 1797x64 float64": digits.astype(np.float64),
        f"synthetic {n_samples}x784 float64": synthetic.astype(np.float64),
        f"synthetic {n_samples}x784 float32": synthetic,
    }


def fit_npclust(X, n_init, seed):
    model = KMeans(n_clusters=10, n_init=n_init, random_state=seed,
                   dtype=X.dtype.name).fit(X)
    return model.inertia_


def fit_sklearn(X, n_init, seed):
    from sklearn.cluster import KMeans as SklearnKMeans

    model = SklearnKMeans(n_clusters=10, n_init=n_init, init="k-means++", max_iter=300, tol=1e-4,
                          algorithm="lloyd", random_state=seed).fit(X)
    return model.inertia_


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=70_000, help="rows of the synthetic data")
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="timed fits of each, interleaved")
    parser.add_argument("--digits-rounds", type=int, default=20,
                        help="rounds on the digits, each with its own seed (default 20): a fit "
                             "takes about 50 ms, and its time depends on the seed more than on "
                             "the implementation")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and OpenMP threads for both (default: as the environment)")
    parser.add_argument("--json", default="", help="write the results here")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):
        info = environment()
        print(describe(info))
        rows = []
        warm_up = np.random.default_rng(0).random((200, 8))
        for fit in (fit_npclust, fit_sklearn):  # imports and thread pools, before any timing
            fit(warm_up, 1, 0)
        for name, X in datasets(args.n).items():
            times = {"npclust": [], "sklearn": []}
            inertias = {"npclust": [], "sklearn": []}
            rounds = args.digits_rounds if name.startswith("digits") else args.rounds
            for round_index in range(rounds):
                for contender, fit in (("npclust", fit_npclust), ("sklearn", fit_sklearn)):
                    start = time.perf_counter()
                    inertias[contender].append(fit(X, args.n_init, round_index))
                    times[contender].append(time.perf_counter() - start)
            row = {"data": name, **{f"{key}_seconds": statistics.median(values)
                                    for key, values in times.items()},
                   **{f"{key}_inertia": statistics.mean(values)
                      for key, values in inertias.items()},
                   "all_seconds": times, "all_inertias": inertias}
            row["ratio"] = row["npclust_seconds"] / row["sklearn_seconds"]
            rows.append(row)
            print(f"{name:<30} npclust {row['npclust_seconds']:8.2f}s  sklearn "
                  f"{row['sklearn_seconds']:8.2f}s  ratio {row['ratio']:5.2f}  inertia "
                  f"{row['npclust_inertia']:.6g} vs {row['sklearn_inertia']:.6g}", flush=True)
    write_json(args.json, {"environment": info, "threads": args.threads,
                           "n_init": args.n_init, "rounds": args.rounds, "rows": rows})


if __name__ == "__main__":
    main()
