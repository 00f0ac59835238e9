"""Scaling benchmarks: threads, bounded memory, and linear-time approximations.

Sections (``--sections``, default all):

``njobs``
    Median wall-clock time of ``NTK(depth=3)(X)`` (n x n, d = 50; relu, or
    each of ``--njobs-activations``) with
    ``n_jobs=1`` and ``n_jobs=2`` (runs interleaved), the speed-up, and the
    largest difference between the two results (the tiles are the same
    arithmetic, so it is 0).
``tiles``
    The same for each of ``--tile-sizes`` (not in the default set): how the
    tile size trades numpy's per-call cost against cache, for one and two
    threads.
``memory``
    In a fresh subprocess, ``NTK(depth=3)(X, Y)`` with n = 30000 rows and
    columns (a 7.2 GB float64 output, on a 24 GB machine) and the peak
    resident set size (``VmHWM``) relative to the output size.
``approx``
    Relative Frobenius error ||Φ Φᵀ - K|| / ||K|| of NTKSampler / NNGPSampler
    features and of Nystroem(kernel=NTK/NNGP) against the exact kernel on
    500 standard normal points (d = 10, relu, depth 3), as a function of
    n_components (median over seeds), with the fitted log-log slope.
``scaling``
    A synthetic regression problem (d = 10, smooth target plus noise 0.1):
    exact ``NTKRegressor`` (t = inf, alpha = 0.01) against
    ``NTKSampler`` + Ridge and ``Nystroem(kernel=NTK)`` + Ridge (same
    alpha, same kernel), test R² and fit+predict time for n up to 1e5.
    The exact model needs the n x n kernel (80 GB at n = 1e5), so it runs up
    to ``--exact-max`` and its time is extrapolated by a power law fitted to
    its two largest sizes.  Saves ``scale_time_vs_n.png`` (log-log).

How to run (from the repository root, package installed)::

    python benchmarks/bench_scale.py                       # everything
    python benchmarks/bench_scale.py --sections njobs memory
    python benchmarks/bench_scale.py --sections tiles --repeats 11
    python benchmarks/bench_scale.py --sections scaling --exact-max 8000

The machine is shared and noisy: times are medians of ``--repeats`` runs.
The header gives the CPU, its SIMD level, BLAS and versions
(``_environment.py``), every section's title repeats the CPU and SIMD level,
and ``--json`` stores them under ``"environment"``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _environment  # noqa: E402


def _peak_rss_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _median_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def _interleaved_times(functions, repeats):
    """Median time of each function, run in turn A B A B ... so drift hits all."""
    times = {key: [] for key in functions}
    results = {}
    for _ in range(repeats):
        for key, function in functions.items():
            start = time.perf_counter()
            results[key] = function()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}, times, results


def _max_difference(first, second):
    """Largest absolute difference between two arrays or tuples of arrays."""
    if isinstance(first, tuple):
        return max(_max_difference(a, b) for a, b in zip(first, second))
    return float(np.max(np.abs(first - second)))


def section_njobs(args):
    from sklearn_ntk import NTK

    X = np.random.RandomState(0).normal(size=(args.njobs_n, 50))
    rows = []
    cases = [(activation, False) for activation in args.njobs_activations]
    if args.njobs_gradient:
        cases += [(activation, True) for activation in args.njobs_activations]
    for activation, eval_gradient in cases:
        name = activation + (" with eval_gradient" if eval_gradient else "")
        kernels = {n_jobs: NTK(depth=3, activation=activation, n_jobs=n_jobs)
                   for n_jobs in (1, 2)}
        kernels[2](X[:500])  # warm-up: imports, thread pools
        medians, times, results = _interleaved_times(
            {n_jobs: (lambda kernel=kernel: kernel(X, eval_gradient=eval_gradient))
             for n_jobs, kernel in kernels.items()},
            args.repeats,
        )
        for n_jobs in (1, 2):
            print(f"  {name}, n_jobs={n_jobs}: median {medians[n_jobs]:.3f} s  "
                  f"(runs {[round(t, 3) for t in times[n_jobs]]})")
        difference = _max_difference(results[1], results[2])
        speedup = medians[1] / medians[2]
        print(f"  {name}: speed-up 1 -> 2 threads {speedup:.2f}x; "
              f"max |K1 - K2| = {difference:.3g}", flush=True)
        rows.append(dict(activation=activation, eval_gradient=eval_gradient,
                         n=args.njobs_n, time_1=medians[1], time_2=medians[2],
                         speedup=speedup, max_difference=difference))
    return rows


def section_tiles(args):
    """The njobs measurement for several tile sizes (the library's TILE_SIZE)."""
    from sklearn_ntk import NTK
    from sklearn_ntk._recursion import kernel_matrices

    X = np.random.RandomState(0).normal(size=(args.njobs_n, 50))
    params = NTK(depth=3).get_params()
    del params["beta_bounds"], params["weight_std_bounds"], params["n_jobs"]
    functions = {
        (tile_size, n_jobs): (
            lambda tile_size=tile_size, n_jobs=n_jobs: kernel_matrices(
                X, **params, tile_size=tile_size, n_jobs=n_jobs).ntk
        )
        for tile_size in args.tile_sizes for n_jobs in (1, 2)
    }
    kernel_matrices(X[:500], **params, n_jobs=2)  # warm-up
    medians, _, _ = _interleaved_times(functions, args.repeats)
    rows = []
    for tile_size in args.tile_sizes:
        one, two = medians[tile_size, 1], medians[tile_size, 2]
        print(f"  tile {tile_size}: n_jobs=1 {one:.3f} s, n_jobs=2 {two:.3f} s, "
              f"speed-up {one / two:.2f}x")
        rows.append(dict(tile_size=tile_size, time_1=one, time_2=two, speedup=one / two))
    return dict(n=args.njobs_n, rows=rows)


def _memory_child(n):
    from sklearn_ntk import NTK

    rng = np.random.RandomState(0)
    X, Y = rng.normal(size=(n, 50)), rng.normal(size=(n, 50))
    baseline = _peak_rss_bytes()
    start = time.perf_counter()
    K = NTK(depth=3, n_jobs=2)(X, Y)
    elapsed = time.perf_counter() - start
    print(json.dumps(dict(n=n, seconds=elapsed, output_bytes=K.nbytes,
                          baseline_bytes=baseline, peak_bytes=_peak_rss_bytes(),
                          finite=bool(np.isfinite(K[::997, ::991]).all()))))


def section_memory(args):
    output = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(args.memory_n)],
        check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    result = json.loads(output)
    gib = 2.0**30
    print(f"  n={result['n']}: {result['seconds']:.0f} s, output {result['output_bytes'] / gib:.2f} GiB, "
          f"peak RSS {result['peak_bytes'] / gib:.2f} GiB "
          f"(= output x {result['peak_bytes'] / result['output_bytes']:.3f}; "
          f"before the call {result['baseline_bytes'] / gib:.2f} GiB)")
    return result


def section_approx(args):
    from sklearn.kernel_approximation import Nystroem

    from sklearn_ntk import NNGP, NTK, NNGPSampler, NTKSampler

    X = np.random.RandomState(0).normal(size=(500, 10))
    sizes = args.approx_sizes
    table = {}
    for name, make in [
        ("NTKSampler", lambda D, s: NTKSampler(depth=3, n_components=D, random_state=s)),
        ("NNGPSampler", lambda D, s: NNGPSampler(depth=3, n_components=D, random_state=s)),
        ("Nystroem(NTK)", lambda D, s: Nystroem(kernel=NTK(depth=3), n_components=D, random_state=s)),
        ("Nystroem(NNGP)", lambda D, s: Nystroem(kernel=NNGP(depth=3), n_components=D, random_state=s)),
    ]:
        K = (NTK if "NTK" in name else NNGP)(depth=3)(X)
        errors = []
        for D in sizes:
            if name.startswith("Nystroem") and D >= len(X):
                errors.append(float("nan"))
                continue
            draws = []
            for seed in range(args.seeds):
                F = make(D, seed).fit_transform(X)
                draws.append(np.linalg.norm(F @ F.T - K) / np.linalg.norm(K))
            errors.append(float(np.median(draws)))
        finite = np.isfinite(errors)
        slope = np.polyfit(np.log(np.array(sizes)[finite]), np.log(np.array(errors)[finite]), 1)[0]
        table[name] = dict(errors=errors, slope=float(slope))
        print(f"  {name:15s} " + "  ".join(f"{D}: {e:.4f}" for D, e in zip(sizes, errors))
              + f"   slope {slope:.2f}")
    return dict(sizes=sizes, table=table)


def _problem(n, n_test=2000, d=10, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n + n_test, d))
    directions = np.random.RandomState(123).normal(size=(3, d)) / np.sqrt(d)
    u = X @ directions.T
    y = np.sin(2 * u[:, 0]) + u[:, 1] * u[:, 2] + 0.5 * np.abs(u[:, 0] + u[:, 2])
    y = y + 0.1 * rng.normal(size=len(y))
    return X[:n], y[:n], X[n:], y[n:]


def section_scaling(args):
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline

    from sklearn_ntk import NTK, NTKRegressor, NTKSampler

    alpha = 0.01
    methods = {
        "exact NTKRegressor": lambda: NTKRegressor(depth=3, alpha=alpha, n_jobs=2),
        f"NTKSampler({args.features}) + Ridge": lambda: make_pipeline(
            NTKSampler(depth=3, n_components=args.features, random_state=0),
            Ridge(alpha=alpha, fit_intercept=False)),
        f"Nystroem(NTK, {args.landmarks}) + Ridge": lambda: make_pipeline(
            Nystroem(kernel=NTK(depth=3, n_jobs=2), n_components=args.landmarks,
                     random_state=0),
            Ridge(alpha=alpha, fit_intercept=False)),
    }
    results = {name: [] for name in methods}
    for n in args.sizes:
        X, y, X_test, y_test = _problem(n)
        for name, make in methods.items():
            if name.startswith("exact") and n > args.exact_max:
                continue
            start = time.perf_counter()
            model = make().fit(X, y)
            prediction = model.predict(X_test)
            elapsed = time.perf_counter() - start
            score = r2_score(y_test, prediction)
            results[name].append(dict(n=n, seconds=elapsed, r2=score))
            print(f"  n={n:6d}  {name:32s} {elapsed:8.2f} s   test R2 {score:.4f}", flush=True)
    exact = results["exact NTKRegressor"]
    extrapolation = None
    if len(exact) >= 2:
        (n0, t0), (n1, t1) = [(r["n"], r["seconds"]) for r in exact[-2:]]
        exponent = np.log(t1 / t0) / np.log(n1 / n0)
        target = max(args.sizes)
        extrapolation = dict(exponent=float(exponent), n=target,
                             seconds=float(t1 * (target / n1) ** exponent),
                             kernel_gib=target**2 * 8 / 2**30)
        print(f"  exact: time ~ n^{exponent:.2f}; extrapolated to n={target}: "
              f"{extrapolation['seconds']:.0f} s and a {extrapolation['kernel_gib']:.0f} GiB kernel")
    _plot(results, extrapolation, os.path.join(args.output_dir, "scale_time_vs_n.png"))
    return dict(results=results, extrapolation=extrapolation)


def _plot(results, extrapolation, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, rows in results.items():
        if not rows:
            continue
        n = [r["n"] for r in rows]
        t = [r["seconds"] for r in rows]
        (line,) = ax.loglog(n, t, "o-", label=name)
        if name.startswith("exact") and extrapolation:
            ax.loglog([n[-1], extrapolation["n"]], [t[-1], extrapolation["seconds"]], "--",
                      color=line.get_color(),
                      label=f"exact, extrapolated (~n^{extrapolation['exponent']:.1f})")
    ax.set_xlabel("training samples n")
    ax.set_ylabel("fit + predict time (s)")
    ax.set_title("NTK (relu, depth 3): exact vs linear-time approximations")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"  saved {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", nargs="+", default=["njobs", "memory", "approx", "scaling"],
                        choices=["njobs", "tiles", "memory", "approx", "scaling"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--njobs-n", type=int, default=6000)
    parser.add_argument("--njobs-activations", nargs="+", default=["relu"],
                        help="activations for the njobs section")
    parser.add_argument("--njobs-gradient", action="store_true",
                        help="also time K(X, eval_gradient=True) in the njobs section")
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[192, 256, 320, 384, 512],
                        help="tile sizes for the tiles section")
    parser.add_argument("--memory-n", type=int, default=30000)
    parser.add_argument("--approx-sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[1000, 3000, 10000, 30000, 100000])
    parser.add_argument("--exact-max", type=int, default=10000)
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--landmarks", type=int, default=1000)
    parser.add_argument("--output-dir", default=HERE)
    parser.add_argument("--json", help="also write all results to this file")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    environment = _environment.print_header()
    everything = {"environment": environment}
    for name in args.sections:
        print(f"[{name}] on {_environment.short(environment)}", flush=True)
        everything[name] = globals()[f"section_{name}"](args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(everything, handle, indent=1)


if __name__ == "__main__":
    main()
