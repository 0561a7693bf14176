"""Time per training step: npclust against its GEMM floor and against PyTorch.

Cases (issue 7):

* ``imsat``     784-1200-1200-10 MLP, Linear→BatchNorm1d→ReLU hidden layers, IMSAT's
                mutual-information loss, Adam, batch 250;
* ``imsat_vat`` the same plus the VAT term with one power iteration (two more forward
                passes, an input-only backward and a second parameter backward);
* ``dec``       DEC's autoencoder 784-500-500-2000-10-2000-500-500-784 (ReLU between,
                linear embedding and output), MSE reconstruction, Adam, batch 256.

For each case and dtype the script times, interleaved round by round so that slow
phases of a shared machine hit every contender alike:

* **floor**: the step's matrix products alone (same shapes and layouts, ``np.matmul``
  with ``out=`` into preallocated arrays) — what no NumPy step can beat;
* **npclust**: one complete training step (zero_grad, forward, loss, backward, Adam);
* **torch** (when importable): the equivalent ``torch.nn`` step, with
  ``torch.set_num_threads`` equal to NumPy's BLAS threads, and torch's own GEMM floor.

The table gives medians in milliseconds and the ratios npclust/floor and
npclust/torch. ``--breakdown`` (on by default for ``imsat``) splits an npclust step into
GEMMs, the rest of Linear, BatchNorm, activations, loss, optimizer and glue.

Thread counts matter: set ``OPENBLAS_NUM_THREADS`` (and, for a fair comparison, nothing
else) before starting; ``OPENBLAS_CORETYPE`` too, see the README.

Examples::

    OPENBLAS_NUM_THREADS=1 python benchmarks/step_time.py --quick
    python benchmarks/step_time.py --dtypes float32 float64 --json step_time.json
"""

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import blas_threads, describe, environment, timed, write_json  # noqa: E402

import npclust  # noqa: E402
from npclust import nn  # noqa: E402
from npclust.functional import log_softmax, log_softmax_backward, softmax  # noqa: E402
from npclust.losses import kl_div, mse, mutual_information  # noqa: E402
from npclust.optim import Adam  # noqa: E402

CASES = {
    # name: (layer widths, batch size, hidden block, description)
    "imsat": ((784, 1200, 1200, 10), 250, "imsat"),
    "imsat_vat": ((784, 1200, 1200, 10), 250, "imsat"),
    "dec": ((784, 500, 500, 2000, 10, 2000, 500, 500, 784), 256, "dec"),
}
MU, LAM, XI, LR = 4.0, 0.1, 10.0, 2e-3
# Wall time by default; --clock cpu switches to the calling thread's CPU time.
clock = time.perf_counter


# ------------------------------------------------------------------------ data
def make_batch(case, dtype, seed=0):
    widths, batch, _ = CASES[case]
    rng = np.random.default_rng(seed)
    # Pixel-like inputs in [0, 1], as MNIST's.
    x = rng.random((batch, widths[0])).astype(dtype)
    radius = (0.25 * (2.0 + rng.random(batch))).astype(dtype)
    return x, radius


# --------------------------------------------------------------------- npclust
def build_npclust(case, dtype, seed=0):
    widths, _, kind = CASES[case]
    rng = np.random.default_rng(seed)
    if kind == "imsat":
        layers = []
        for width_in, width_out in zip(widths[:-2], widths[1:-1]):
            layers += [nn.Linear(width_in, width_out, rng=rng, dtype=dtype),
                       nn.BatchNorm1d(width_out, dtype=dtype), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-2], widths[-1], rng=rng, dtype=dtype))
        return nn.Sequential(*layers).flatten_parameters()
    # DEC: encoder to the 10-d embedding, decoder back; no ReLU after either end.
    middle = widths.index(min(widths))

    def stack(sizes):
        layers = []
        for width_in, width_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(width_in, width_out, rng=rng, dtype=dtype), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers[:-1])

    return nn.Sequential(stack(widths[:middle + 1]), stack(widths[middle:])).flatten_parameters()


def _set_tracking(network, track):
    for module in network.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.track_running_stats = track


def npclust_step_function(case, network, optimizer, x, radius, seed=0):
    """A closure running one training step of ``case`` (as the estimators do)."""
    rng = np.random.default_rng(seed)

    def information_step():
        network.zero_grad()
        logits = network(x)
        _, dlogits = mutual_information(logits, mu=MU)
        network.backward(LAM * dlogits, input_grad=False)
        optimizer.step()

    def vat_step():
        network.zero_grad()
        logits = network(x)
        _, dlogits = mutual_information(logits, mu=MU)
        network.backward(LAM * dlogits, input_grad=False)
        # VAT: KL(p(x) || p(x + r_adv)), r_adv from one power iteration.
        target = softmax(logits)
        probe = rng.standard_normal(x.shape).astype(x.dtype)
        probe *= XI / np.linalg.norm(probe, axis=1, keepdims=True)
        _set_tracking(network, False)
        network.requires_grad_(False)
        log_q = log_softmax(network(x + probe))
        _, dlog_q = kl_div(log_q, target)
        direction = network.backward(log_softmax_backward(dlog_q, log_q))
        network.requires_grad_(True)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        log_q = log_softmax(network(x + radius[:, None] * direction))
        _set_tracking(network, True)
        _, dlog_q = kl_div(log_q, target)
        network.backward(log_softmax_backward(dlog_q, log_q), input_grad=False)
        optimizer.step()

    def reconstruction_step():
        network.zero_grad()
        _, dreconstruction = mse(network(x), x)
        network.backward(dreconstruction, input_grad=False)
        optimizer.step()

    return {"imsat": information_step, "imsat_vat": vat_step, "dec": reconstruction_step}[case]


# ------------------------------------------------------------------- GEMM floor
def gemm_plan(case):
    """The matrix products of one step: (kind, batch, in, out) per product.

    kinds: ``fwd`` x @ W.T, ``wgrad`` dy.T @ x, ``dx`` dy @ W (layouts as in nn.Linear).
    """
    widths, batch, _ = CASES[case]
    layers = list(zip(widths[:-1], widths[1:]))
    forward = [("fwd", batch, i, o) for i, o in layers]
    parameter_backward = [("wgrad", batch, i, o) for i, o in layers] + \
        [("dx", batch, i, o) for i, o in layers[1:]]
    if case == "imsat_vat":
        input_backward = [("dx", batch, i, o) for i, o in layers]
        return (forward + parameter_backward + forward + input_backward
                + forward + parameter_backward)
    return forward + parameter_backward


def gemm_floor_function(case, dtype, seed=0):
    """A closure running the step's GEMMs alone, on preallocated operands with ``out=``."""
    rng = np.random.default_rng(seed)
    calls = []
    for kind, batch, width_in, width_out in gemm_plan(case):
        weight = rng.standard_normal((width_out, width_in)).astype(dtype)
        x = rng.standard_normal((batch, width_in)).astype(dtype)
        dy = rng.standard_normal((batch, width_out)).astype(dtype)
        if kind == "fwd":
            calls.append((x, weight.T, np.empty((batch, width_out), dtype)))
        elif kind == "wgrad":
            calls.append((dy.T, x, np.empty((width_out, width_in), dtype)))
        else:
            calls.append((dy, weight, np.empty((batch, width_in), dtype)))

    def run():
        for a, b, out in calls:
            np.matmul(a, b, out=out)

    return run


def flops(case):
    return sum(2.0 * batch * width_in * width_out
               for _, batch, width_in, width_out in gemm_plan(case))


# ----------------------------------------------------------------------- torch
def torch_functions(case, dtype, x_np, radius_np, seed=0):
    """(step, gemm floor) closures for PyTorch, or None when torch is not importable."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(seed)
    tdtype = {np.dtype(np.float32): torch.float32,
              np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    widths, batch, kind = CASES[case]
    if kind == "imsat":
        layers = []
        for width_in, width_out in zip(widths[:-2], widths[1:-1]):
            layers += [torch.nn.Linear(width_in, width_out), torch.nn.BatchNorm1d(width_out),
                       torch.nn.ReLU(inplace=True)]
        layers.append(torch.nn.Linear(widths[-2], widths[-1]))
        model = torch.nn.Sequential(*layers)
    else:
        middle = widths.index(min(widths))

        def stack(sizes):
            layers = []
            for width_in, width_out in zip(sizes[:-1], sizes[1:]):
                layers += [torch.nn.Linear(width_in, width_out), torch.nn.ReLU(inplace=True)]
            return torch.nn.Sequential(*layers[:-1])

        model = torch.nn.Sequential(stack(widths[:middle + 1]), stack(widths[middle:]))
    model = model.to(tdtype).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x = torch.from_numpy(x_np)
    radius = torch.from_numpy(radius_np)[:, None]
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]

    def information_loss(logits):
        log_p = torch.log_softmax(logits, dim=1)
        conditional = -(log_p.exp() * log_p).sum(dim=1).mean()
        log_pbar = torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0])
        marginal = -(log_pbar.exp() * log_pbar).sum()
        return conditional - MU * marginal

    def information_step():
        optimizer.zero_grad()
        information_loss(model(x)).backward()
        optimizer.step()

    def vat_step():
        optimizer.zero_grad()
        logits = model(x)
        loss = LAM * information_loss(logits)
        target = torch.softmax(logits.detach(), dim=1)
        probe = torch.randn_like(x)
        probe = XI * probe / probe.norm(dim=1, keepdim=True)
        probe.requires_grad_(True)
        for module in batch_norms:
            module.track_running_stats = False
        log_q = torch.log_softmax(model(x + probe), dim=1)
        kl = torch.nn.functional.kl_div(log_q, target, reduction="batchmean")
        (direction,) = torch.autograd.grad(kl, probe)
        direction = direction / direction.norm(dim=1, keepdim=True)
        log_q = torch.log_softmax(model(x + radius * direction), dim=1)
        for module in batch_norms:
            module.track_running_stats = True
        loss = loss + torch.nn.functional.kl_div(log_q, target, reduction="batchmean")
        loss.backward()
        optimizer.step()

    def reconstruction_step():
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), x).backward()
        optimizer.step()

    step = {"imsat": information_step, "imsat_vat": vat_step, "dec": reconstruction_step}[case]

    calls = []
    generator = torch.Generator().manual_seed(seed)
    for kind_, batch_, width_in, width_out in gemm_plan(case):
        weight = torch.randn(width_out, width_in, generator=generator, dtype=tdtype)
        a = torch.randn(batch_, width_in, generator=generator, dtype=tdtype)
        dy = torch.randn(batch_, width_out, generator=generator, dtype=tdtype)
        if kind_ == "fwd":
            calls.append((a, weight.t(), torch.empty(batch_, width_out, dtype=tdtype)))
        elif kind_ == "wgrad":
            calls.append((dy.t(), a, torch.empty(width_out, width_in, dtype=tdtype)))
        else:
            calls.append((dy, weight, torch.empty(batch_, width_in, dtype=tdtype)))

    def floor():
        for a, b, out in calls:
            torch.matmul(a, b, out=out)

    def run_step():
        step()

    return run_step, floor


# --------------------------------------------------------------------- timing
def interleaved_medians(contenders, rounds, warmup, inner=1):
    """Median seconds per call of each contender, timed round-robin.

    Each round times ``inner`` consecutive calls of every contender, starting with a
    different one each round, so drifts in machine load are shared.
    """
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    samples = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            function = contenders[name]
            start = clock()
            for _ in range(inner):
                function()
            samples[name].append((clock() - start) / inner)
    return {name: float(np.median(values)) for name, values in samples.items()}, samples


def breakdown(case, dtype, rounds, warmup):
    """Median milliseconds per part of an npclust step, by wrapping module methods."""
    x, radius = make_batch(case, dtype)
    network = build_npclust(case, dtype)
    optimizer = Adam(network.parameters(), lr=LR)
    totals = {}

    active = set()

    def wrap(obj, attribute, part):
        original = getattr(obj, attribute)

        def timed_call(*args, **kwargs):
            if id(obj) in active:  # a wrapped method calling another: count once
                return original(*args, **kwargs)
            active.add(id(obj))
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                totals[part] = totals.get(part, 0.0) + clock() - start
                active.discard(id(obj))

        setattr(obj, attribute, timed_call)

    parts_of = {nn.Linear: "Linear", nn.BatchNorm1d: "BatchNorm", nn.ReLU: "activations"}
    for module in network.modules():
        part = parts_of.get(type(module))
        if part:
            for method in ("forward", "backward"):
                wrap(module, method, part)
    wrap(optimizer, "step", "optimizer")
    wrap(network, "zero_grad", "zero_grad")
    module = sys.modules[__name__]
    loss_functions = ("mutual_information", "kl_div", "mse", "softmax", "log_softmax",
                      "log_softmax_backward")
    originals = {name: getattr(module, name) for name in loss_functions}
    for name in loss_functions:
        wrap(module, name, "loss")
    try:
        step = npclust_step_function(case, network, optimizer, x, radius)
        floor = gemm_floor_function(case, dtype)
        for _ in range(warmup):
            step()
        per_step, totals_ms = [], {}
        for _ in range(rounds):
            totals.clear()
            total = timed(step, clock)
            gemm = timed(floor, clock)
            per_step.append((total, gemm, dict(totals)))
    finally:
        for name, function in originals.items():
            setattr(module, name, function)
    parts = sorted({part for _, _, t in per_step for part in t})
    result = {"step": 1e3 * float(np.median([s[0] for s in per_step])),
              "GEMM floor": 1e3 * float(np.median([s[1] for s in per_step]))}
    for part in parts:
        totals_ms[part] = 1e3 * float(np.median([s[2].get(part, 0.0) for s in per_step]))
    result["Linear beyond GEMM"] = totals_ms.pop("Linear", 0.0) - result["GEMM floor"]
    result.update(totals_ms)
    accounted = result["GEMM floor"] + sum(v for k, v in result.items()
                                            if k not in ("step", "GEMM floor"))
    result["glue (rest)"] = result["step"] - accounted
    return result


# ----------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                        choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds per contender")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="few rounds, float32 only")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: the main thread's CPU time (time.thread_time), which other "
                             "processes on a busy machine barely disturb; 1 BLAS thread only")
    parser.add_argument("--json", default="step_time.json", help="output file ('' for none)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup = min(args.rounds, 8), min(args.warmup, 2)
        if args.dtypes == ["float32", "float64"]:
            args.dtypes = ["float32"]

    threads = blas_threads()
    global clock
    if args.clock == "cpu":
        if threads != 1:
            parser.error("--clock cpu needs OPENBLAS_NUM_THREADS=1: "
                         "work on other threads would not be counted")
        clock = time.thread_time
    info = environment()
    info["npclust"] = npclust.__version__
    info["clock"] = args.clock
    torch_available = False
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(threads)
            info["torch"] = torch.__version__
            info["torch_threads"] = torch.get_num_threads()
            torch_available = True
        except ImportError:
            info["torch"] = None
    torch_note = (f"; torch {info['torch']} with {info['torch_threads']} thread(s)"
                  if torch_available else "; torch not used")
    print(f"clock: {args.clock}; " + describe(info) + torch_note)

    rows = []
    header = (f"{'case':<10} {'dtype':<8} {'GFLOP':>6} {'floor':>8} {'npclust':>8} {'torch':>8} "
              f"{'t.floor':>8} {'np/floor':>8} {'np/torch':>8} {'torch/t.floor':>13}")
    print(header + "\n" + "-" * len(header))
    for dtype_name in args.dtypes:
        dtype = np.dtype(dtype_name)
        for case in args.cases:
            x, radius = make_batch(case, dtype)
            network = build_npclust(case, dtype)
            optimizer = Adam(network.parameters(), lr=LR)
            contenders = {
                "floor": gemm_floor_function(case, dtype),
                "npclust": npclust_step_function(case, network, optimizer, x, radius),
            }
            if torch_available:
                torch_step, torch_floor = torch_functions(case, dtype, x, radius)
                contenders["torch"] = torch_step
                contenders["torch_floor"] = torch_floor
            medians, samples = interleaved_medians(contenders, args.rounds, args.warmup)
            ms = {name: 1e3 * value for name, value in medians.items()}
            row = {"case": case, "dtype": dtype_name, "gflop": flops(case) / 1e9,
                   "median_ms": ms, "rounds": args.rounds,
                   "ratio_npclust_floor": ms["npclust"] / ms["floor"],
                   "floor_gflops_per_s": flops(case) / 1e9 / (ms["floor"] / 1e3)}
            if torch_available:
                row["ratio_npclust_torch"] = ms["npclust"] / ms["torch"]
                row["ratio_torch_torch_floor"] = ms["torch"] / ms["torch_floor"]
            rows.append(row)
            fmt = lambda key: f"{ms[key]:8.2f}" if key in ms else f"{'-':>8}"  # noqa: E731
            print(f"{case:<10} {dtype_name:<8} {row['gflop']:6.2f} {fmt('floor')} {fmt('npclust')} "
                  f"{fmt('torch')} {fmt('torch_floor')} {row['ratio_npclust_floor']:8.3f} "
                  + (f"{row['ratio_npclust_torch']:8.3f} {row['ratio_torch_torch_floor']:13.3f}"
                     if torch_available else f"{'-':>8} {'-':>13}"), flush=True)

    breakdowns = {}
    if not args.no_breakdown and "imsat" in args.cases:
        for dtype_name in args.dtypes:
            parts = breakdown("imsat", np.dtype(dtype_name), args.rounds, args.warmup)
            breakdowns[dtype_name] = parts
            print(f"\nbreakdown of an npclust imsat step, {dtype_name} (median ms; parts "
                  "timed by wrapping module methods, GEMM floor timed right after each step):")
            for part, value in parts.items():
                share = 100.0 * value / parts["step"]
                print(f"  {part:<20} {value:8.3f}  {share:5.1f}%")
    write_json(args.json, {"environment": info, "results": rows, "breakdown_imsat": breakdowns})
    return rows


if __name__ == "__main__":
    main()
