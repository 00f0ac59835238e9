"""Scaling benchmarks: threads, bounded memory, and linear-time approximations.

Sections (``--sections``, default all):

``njobs``
    Median wall-clock time of ``NTK(depth=3)(X)`` (n x n, d = 50; relu, or
    each of ``--njobs-activations``) with
    ``n_jobs=1`` and ``n_jobs=2`` (runs interleaved), the speed-up, and the
    largest difference between the two results (the tiles are the same
    arithmetic, so it is 0).
``memory``
    In a fresh subprocess, ``NTK(depth=3)(X, Y)`` with n = 30000 rows and
    columns (a 7.2 GB float64 output, on a 24 GB machine) and the peak
    resident set size (``_harness.peak_rss_bytes``) relative to the output
    size.
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
    its two largest sizes.  Saves ``scale_time_vs_n.png`` (log-log) in
    ``--output-dir`` (default ``benchmarks/results``) if matplotlib is
    installed.

The former ``tiles`` section (and its ``--tile-sizes`` option), a scan of the
package's private tile size, is gone: what it measured, and why the tiles
have 320 rows, is recorded in ``benchmarks/results/scale.md``.

How to run (from the repository root; the script imports the checkout's
``sklearn_ntk``)::

    python benchmarks/bench_scale.py                       # everything
    python benchmarks/bench_scale.py --sections njobs memory
    python benchmarks/bench_scale.py --sections scaling --exact-max 8000
    python benchmarks/bench_scale.py --sections njobs approx --njobs-n 1000 \\
        --approx-sizes 50 100 --seeds 1 --repeats 1 --output /tmp/scale

The machine is shared and noisy: times are medians of ``--repeats`` runs.
The header gives the CPU, its SIMD level, BLAS and versions (``_harness.py``),
every section's title repeats the CPU and SIMD level, and ``--json`` stores
them under ``"environment"``.  Every section run replaces its own section of
``benchmarks/results/scale.md`` (and ``.json``; ``--output STEM`` writes
``STEM.md`` and ``STEM.json`` instead), under the machine and the exact
command; the other sections and the figures recorded earlier are kept.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _harness  # noqa: E402  (also puts the checkout's sklearn_ntk on the path)

GIB = 2.0**30
SECTIONS = ["njobs", "memory", "approx", "scaling"]
TITLE = "Scaling: threads, bounded memory, linear-time approximations"


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
        timings, results = _harness.interleaved(
            {n_jobs: (lambda kernel=kernel: kernel(X, eval_gradient=eval_gradient))
             for n_jobs, kernel in kernels.items()},
            args.repeats,
        )
        for n_jobs in (1, 2):
            print(f"  {name}, n_jobs={n_jobs}: median {timings[n_jobs].median:.3f} s  "
                  f"(runs {[round(t, 3) for t in timings[n_jobs].wall]})")
        difference = _max_difference(results[1], results[2])
        speedup = timings[1].median / timings[2].median
        print(f"  {name}: speed-up 1 -> 2 threads {speedup:.2f}x; "
              f"max |K1 - K2| = {difference:.3g}", flush=True)
        rows.append(dict(activation=activation, eval_gradient=eval_gradient,
                         n=args.njobs_n, time_1=timings[1].median,
                         time_2=timings[2].median, speedup=speedup,
                         max_difference=difference))
    table = _harness.markdown_table(
        ["kernel", "n", "n_jobs=1 [s]", "n_jobs=2 [s]", "speed-up", "max |K₁ − K₂|"],
        [[r["activation"] + (", with gradient" if r["eval_gradient"] else ""), r["n"],
          f"{r['time_1']:.3f}", f"{r['time_2']:.3f}", f"{r['speedup']:.2f}×",
          f"{r['max_difference']:.3g}"] for r in rows])
    return (f"`NTK(depth=3, activation=...)(X)`, X of {args.njobs_n} × 50, the two "
            f"settings interleaved, medians of {args.repeats}:\n\n{table}"), rows


def _memory_child(n):
    from sklearn_ntk import NTK

    rng = np.random.RandomState(0)
    X, Y = rng.normal(size=(n, 50)), rng.normal(size=(n, 50))
    baseline = _harness.peak_rss_bytes()
    start = time.perf_counter()
    K = NTK(depth=3, n_jobs=2)(X, Y)
    elapsed = time.perf_counter() - start
    print(json.dumps(dict(n=n, seconds=elapsed, output_bytes=K.nbytes,
                          baseline_bytes=baseline, peak_bytes=_harness.peak_rss_bytes(),
                          finite=bool(np.isfinite(K[::997, ::991]).all()))))


def section_memory(args):
    result = _harness.run_child(__file__, ["--memory-child", args.memory_n])
    if "error" in result:
        raise RuntimeError(f"the memory child failed: {result['error']}")
    ratio = result["peak_bytes"] / result["output_bytes"]
    print(f"  n={result['n']}: {result['seconds']:.0f} s, output "
          f"{result['output_bytes'] / GIB:.2f} GiB, peak RSS "
          f"{result['peak_bytes'] / GIB:.2f} GiB (= output x {ratio:.3f}; "
          f"before the call {result['baseline_bytes'] / GIB:.2f} GiB)")
    table = _harness.markdown_table(
        ["n", "seconds", "output [GiB]", "peak RSS [GiB]", "peak / output",
         "peak before the call [GiB]"],
        [[result["n"], f"{result['seconds']:.1f}", f"{result['output_bytes'] / GIB:.2f}",
          f"{result['peak_bytes'] / GIB:.2f}", f"{ratio:.3f}",
          f"{result['baseline_bytes'] / GIB:.2f}"]])
    return (f"`NTK(depth=3, n_jobs=2)(X, Y)` in a fresh process, X and Y of "
            f"{result['n']} × 50:\n\n{table}"), result


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
    markdown = _harness.markdown_table(
        ["method"] + [str(D) for D in sizes] + ["log-log slope"],
        [[name] + [f"{e:.4f}" if np.isfinite(e) else "–" for e in row["errors"]]
         + [f"{row['slope']:.2f}"] for name, row in table.items()])
    return (f"Relative Frobenius error ‖ΦΦᵀ − K‖/‖K‖ against n_components, 500 "
            f"standard normal points, d = 10, relu, depth 3, median of "
            f"{args.seeds} draws:\n\n{markdown}"), dict(sizes=sizes, table=table)


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
    text = ""
    if len(exact) >= 2:
        (n0, t0), (n1, t1) = [(r["n"], r["seconds"]) for r in exact[-2:]]
        exponent = np.log(t1 / t0) / np.log(n1 / n0)
        target = max(args.sizes)
        extrapolation = dict(exponent=float(exponent), n=target,
                             seconds=float(t1 * (target / n1) ** exponent),
                             kernel_gib=target**2 * 8 / 2**30)
        text = (f"exact: time ~ n^{exponent:.2f}; extrapolated to n={target}: "
                f"{extrapolation['seconds']:.0f} s and a "
                f"{extrapolation['kernel_gib']:.0f} GiB kernel")
        print("  " + text)
    plot = _plot(results, extrapolation, os.path.join(args.output_dir, "scale_time_vs_n.png"))
    cells = {(name, r["n"]): f"{r['seconds']:.2f} s, R² {r['r2']:.3f}"
             for name, rows in results.items() for r in rows}
    table = _harness.markdown_table(
        ["n"] + list(methods),
        [[n] + [cells.get((name, n), "–") for name in methods] for n in args.sizes])
    markdown = ("Fit + predict time and test R² (2000 test points), relu, depth 3:"
                f"\n\n{table}" + (f"\n\nE{text[1:]}." if text else "")
                + (f"\n\nLog-log plot: `{os.path.basename(plot)}`." if plot else ""))
    return markdown, dict(results=results, extrapolation=extrapolation)


def _plot(results, extrapolation, path):
    """Save the log-log plot of time against n; its path, or None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("  matplotlib is not installed: no plot")
        return None
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
    return path


HEADINGS = {
    "njobs": "n_jobs: 1 vs 2 threads over tiles",
    "memory": "Bounded memory: K(X, Y) in a fresh process",
    "approx": "Random features and Nyström: error vs n_components",
    "scaling": "Exact vs Nyström vs random features",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", nargs="+", default=SECTIONS, choices=SECTIONS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--njobs-n", type=int, default=6000)
    parser.add_argument("--njobs-activations", nargs="+", default=["relu"],
                        help="activations for the njobs section")
    parser.add_argument("--njobs-gradient", action="store_true",
                        help="also time K(X, eval_gradient=True) in the njobs section")
    parser.add_argument("--memory-n", type=int, default=30000)
    parser.add_argument("--approx-sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[1000, 3000, 10000, 30000, 100000])
    parser.add_argument("--exact-max", type=int, default=10000)
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--landmarks", type=int, default=1000)
    parser.add_argument("--output-dir", default=str(_harness.RESULTS),
                        help="where the scaling plot goes (default benchmarks/results)")
    _harness.add_output_argument(parser, "scale")
    parser.add_argument("--json", help="also write all results to this file")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    environment = _harness.print_header()
    meta = _harness.run_metadata(environment, argv)
    everything = {"environment": environment}
    for name in args.sections:
        print(f"[{name}] on {_harness.short(environment)}", flush=True)
        markdown, everything[name] = globals()[f"section_{name}"](args)
        _harness.write_section(args.output, TITLE, name, HEADINGS[name],
                               markdown, everything[name], meta, order=SECTIONS)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(everything, handle, indent=1)


if __name__ == "__main__":
    main()
