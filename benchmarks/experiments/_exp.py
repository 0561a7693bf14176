"""Shared pieces of the quality experiments: bounded data, scores, JSON lines.

Experiments run on the visible sets of ``benchmarks/quality_data.py``, each capped at
``MAX_SAMPLES`` rows (the first rows of the already shuffled set; the digits are
whole) so that a sweep over settings and seeds fits on one BLAS thread. Every run is
appended as one JSON line as soon as it ends, so a stopped sweep loses nothing.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))          # quality_data, _common
sys.path.insert(0, str(HERE.parent.parent))   # the npclust of this work tree

from quality_data import DATASETS, load  # noqa: E402

from npclust.metrics import adjusted_rand_score, clustering_accuracy, normalized_mutual_info_score  # noqa: E402

MAX_SAMPLES = 2500
RESULTS = HERE.parent / "results"


def data(name, max_samples=MAX_SAMPLES):
    X, y = load(name, seed=0)
    return X[:max_samples], y[:max_samples]


def scores(y, labels):
    return {"acc": float(clustering_accuracy(y, labels)),
            "nmi": float(normalized_mutual_info_score(y, labels)),
            "ari": float(adjusted_rand_score(y, labels)),
            "smallest_cluster": int(np.bincount(labels, minlength=int(y.max()) + 1).min())}


class Recorder:
    """Appends one JSON object per line to ``results/<name>.jsonl``; knows what is done."""

    def __init__(self, name):
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.path = RESULTS / f"{name}.jsonl"
        self.done = []
        if self.path.exists():
            self.done = [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def has(self, **key):
        return any(all(run.get(k) == v for k, v in key.items()) for run in self.done)

    def add(self, run):
        self.done.append(run)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(run) + "\n")
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in run.items()
                 if not isinstance(v, (list, dict))}
        print(shown, flush=True)


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


ALL_SETS = list(DATASETS)
