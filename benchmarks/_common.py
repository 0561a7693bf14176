"""Shared helpers for the benchmark scripts: environment report, timing, JSON output.

Not part of the package; the scripts import it from their own folder.
"""

import io
import json
import os
import platform
import sys
import time
from contextlib import redirect_stdout

import numpy as np

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "OPENBLAS_CORETYPE")


def blas_threads():
    """Threads NumPy's BLAS uses: threadpoolctl's answer, else the env vars, else cpu count."""
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return int(pool["num_threads"])
    except ImportError:
        pass
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return os.cpu_count() or 1


def environment():
    """Versions, CPU, BLAS build and thread settings, as a JSON-ready dict."""
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "blas_threads": blas_threads(),
    }
    try:
        info["blas_config"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # older NumPy: capture the printed text instead
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            np.show_config()
        info["blas_config"] = buffer.getvalue()
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = threadpool_info()
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def describe(info):
    """One line summarising :func:`environment` for the top of a table."""
    env = ", ".join(f"{k}={v}" for k, v in info["environment"].items() if v is not None)
    blas = info["blas_config"]
    if isinstance(blas, dict):
        blas = f"{blas.get('name')} {blas.get('version')}"
        corename = next((p.get("architecture") for p in info["threadpools"]
                         if isinstance(p, dict) and p.get("user_api") == "blas"), None) \
            if isinstance(info["threadpools"], list) else None
        if corename:
            blas += f" ({corename})"
    return (f"numpy {info['numpy']}, BLAS {blas}, {info['blas_threads']} BLAS thread(s), "
            f"{info['cpu_count']} CPUs [{info['processor']}]" + (f"; {env}" if env else ""))


def synthetic_digits_like(n_samples, n_features=784, n_clusters=10, seed=0):
    """Float32 data in [0, 1] with ``n_clusters`` groups, built in row chunks."""
    rng = np.random.default_rng(seed)
    centers = rng.random((n_clusters, n_features)).astype(np.float32)
    labels = rng.integers(n_clusters, size=n_samples)
    X = np.empty((n_samples, n_features), dtype=np.float32)
    for start in range(0, n_samples, 10_000):
        stop = min(start + 10_000, n_samples)
        block = centers[labels[start:stop]] + 0.15 * rng.standard_normal(
            (stop - start, n_features), dtype=np.float32)
        np.clip(block, 0.0, 1.0, out=X[start:stop])
    return X, labels


def timed(function, clock=time.perf_counter):
    """Seconds taken by one call of ``function``, measured with ``clock``."""
    start = clock()
    function()
    return clock() - start


def write_json(path, payload):
    if path:
        with open(path, "w") as handle:
            json.dump(payload, handle, indent=2, default=_jsonable)
        print(f"wrote {path}")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
