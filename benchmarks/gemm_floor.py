"""The matrix products of one IMSAT step: NumPy's BLAS against PyTorch's, same shapes.

A training step is mostly GEMMs, so their speed is the floor under the whole-fit
comparison of ``fit_time.py``. For each layer shape of IMSAT's default network
(batch 250, 784-1200-1200) the three products a Linear layer runs (forward
``x @ W.T``, input gradient ``dy @ W``, weight gradient ``dy.T @ x``) are timed in
float32, best of 5 repeats of 20 products, NumPy and torch alternating.

    python benchmarks/gemm_floor.py --threads 1
"""

import argparse
import os
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe, environment  # noqa: E402

SHAPES = [(250, 784, 1200), (250, 1200, 1200)]


def milliseconds(product):
    return min(timeit.repeat(product, number=20, repeat=5)) / 20 * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    with threadpool_limits(args.threads):
        print(describe(environment()))
        for batch, inputs, outputs in SHAPES:
            x = rng.random((batch, inputs), dtype=np.float32)
            weight = rng.random((outputs, inputs), dtype=np.float32)
            dy = rng.random((batch, outputs), dtype=np.float32)
            tx, tweight, tdy = map(torch.from_numpy, (x, weight, dy))
            cells = []
            for name, numpy_product, torch_product in (
                    ("forward", lambda: x @ weight.T, lambda: tx @ tweight.T),
                    ("input grad", lambda: dy @ weight, lambda: tdy @ tweight),
                    ("weight grad", lambda: dy.T @ x, lambda: tdy.T @ tx)):
                numpy_ms, torch_ms = milliseconds(numpy_product), milliseconds(torch_product)
                cells.append(f"{name} numpy {numpy_ms:.2f} torch {torch_ms:.2f} ms "
                             f"({numpy_ms / torch_ms:.2f}x)")
            print(f"{batch}x{inputs} -> {outputs}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
