"""Benchmark the ReLU NTK Gram matrix K(X, X): time and peak memory.

What it measures
----------------
The wall-clock time (``time.perf_counter``, median of several repeats) to build
the n x n Neural Tangent Kernel Gram matrix of a depth-4 ReLU network
(``beta=0.1``, ``weight_std=1.0``, float64) on ``X ~ N(0, I)`` with d = 100
features, for n in {1000, 2000, 5000, 10000}, with three implementations run in
the same process:

``sklearn_ntk``
    This package: ``NTK(depth=4, activation="relu", beta=0.1, weight_std=1.0)(X)``.
``scikit-ntk``
    scikit-ntk 1.2.1 from PyPI (import name ``skntk``):
    ``NeuralTangentKernel(depth=3, bias=0.1)(X)``.  Its ``depth`` counts hidden
    layers (ours - 1).  Its kernel is not the same function as ours for
    ``beta > 0`` (see ``check_agreement``), but it does the same amount of
    work, so the timing comparison is fair.
``naive``
    The plain numpy recursion of ``_naive.py`` (full n x n arrays, ``np.arccos``,
    ``np.sin``): what a user would write by hand.

Before timing, a small problem (n = 400) checks that the implementations agree
and prints the maximum relative differences, including the exact mapping from
scikit-ntk's convention to ours.

The repeats are interleaved across methods (A, B, C, A, B, C, ...) so that load
from other processes hits all of them alike.  Besides the wall time, the table
gives the median CPU time of the process (``time.process_time``), which is less
sensitive to a busy machine.  Speed-ups are ratios of median wall times.  A
method is skipped at the larger sizes once its median exceeded ``--time-cap``
seconds (default 120) at a smaller n; slow cells get fewer repeats (enough to
stay within ``--cell-budget`` seconds, at least one).

With ``--memory``, each method instead runs in a fresh subprocess that builds
only one Gram matrix (default n = 15000, a 1.68 GiB output) and reports its peak
resident set size (``_harness.peak_rss_bytes``: ``VmHWM`` on Linux, else
``ru_maxrss`` in the platform's unit); the table gives peak RSS / output size.  A method whose expected footprint does not
fit in the available memory is run at the largest smaller n that does.

How to run
----------
From the repository root (the script imports the checkout's ``sklearn_ntk``),
with numpy, scipy, scikit-learn, joblib and ``scikit-ntk==1.2.1`` installed::

    python benchmarks/bench_gram.py                          # timing, all sizes
    python benchmarks/bench_gram.py --sizes 1000 2000 --repeats 5
    python benchmarks/bench_gram.py --methods sklearn_ntk naive
    python benchmarks/bench_gram.py --memory                 # peak RSS, n = 15000
    python benchmarks/bench_gram.py --memory --sizes 5000 --methods scikit-ntk
    python benchmarks/bench_gram.py --methods sklearn_ntk --n-jobs 2 --json out.json
    python benchmarks/bench_gram.py --sizes 500 --repeats 1 --output /tmp/gram

The timing run (with the agreement check) and the ``--memory`` run each
replace their own section of ``benchmarks/results/gram.md`` (and ``.json``;
``--output STEM`` writes ``STEM.md`` and ``STEM.json`` instead); the other
section and the figures recorded earlier on other machines are kept.

Methods whose package is not installed are reported as unavailable and skipped.
The machine is usually noisy: compare medians, not single runs.

The header gives the CPU, the SIMD level numpy dispatches to, BLAS and versions
(``_harness.py``, which also does the timing and the memory measurement); the
results files and the ``--json`` file store them under ``"environment"``.  After
every round of timed runs the script also times numpy's float64 ``arccos`` (one
per entry per layer here), so that each figure is printed next to the arccos
cost measured at the same moments: about 1.3 ns an element where numpy uses
AVX-512 and about 22 ns on an AVX2-only CPU, which makes the whole Gram matrix
about three times slower there.
"""

import argparse
import json
import os
import sys

import numpy as np

# ``_harness`` and ``_naive`` sit next to this file; make them importable
# however the script is run (``_harness`` then adds the repository root).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

N_FEATURES = 100
DEPTH = 4  # dense layers, our convention (scikit-ntk's depth is DEPTH - 1)
BETA = 0.1
WEIGHT_STD = 1.0
SEED = 0
ALL_METHODS = ("sklearn_ntk", "scikit-ntk", "naive")
GIB = 2.0**30

# Rough peak RSS / output size (measured: scikit-ntk 9.2, naive 10.1), used only
# to decide whether a memory run fits in RAM: a method that would not fit is run
# at a smaller n instead of being killed by the OOM killer.
EXPECTED_MEMORY_FACTOR = {"sklearn_ntk": 3.0, "scikit-ntk": 9.5, "naive": 10.5}

#: Θ⁴(x, x') of the ReLU NTK for x = (1, 0), x' = (cos 1, sin 1), β = 0.1,
#: σ_w = 1, checked against neural-tangents.
REFERENCE_THETA4 = 0.143076689459114

TITLE = "Gram matrix K(X, X): depth-4 ReLU NTK, d = 100, float64"


# ---------------------------------------------------------------------------
# The three implementations, each as a factory returning ``X -> K(X, X)``.
# ---------------------------------------------------------------------------


def _make_sklearn_ntk(depth=DEPTH, beta=BETA, weight_std=WEIGHT_STD, n_jobs=None):
    from sklearn_ntk import NTK

    params = dict(depth=depth, activation="relu", beta=beta, weight_std=weight_std)
    if n_jobs is not None:
        params["n_jobs"] = n_jobs
    return NTK(**params)


def _make_scikit_ntk(depth=DEPTH, beta=BETA, weight_std=WEIGHT_STD, n_jobs=None):
    from skntk import NeuralTangentKernel

    # scikit-ntk has no weight std (it always uses He scaling, c = 2) and its
    # depth counts the hidden layers only.
    if weight_std != 1.0:
        raise ValueError("scikit-ntk has no weight_std parameter")
    return NeuralTangentKernel(depth=depth - 1, bias=beta)


def _make_naive(depth=DEPTH, beta=BETA, weight_std=WEIGHT_STD, n_jobs=None):
    from _naive import relu_ntk_naive

    def kernel(X):
        return relu_ntk_naive(X, depth=depth, beta=beta, weight_std=weight_std)

    return kernel


FACTORIES = {
    "sklearn_ntk": _make_sklearn_ntk,
    "scikit-ntk": _make_scikit_ntk,
    "naive": _make_naive,
}


def make_kernel(method, n_jobs=None):
    """Return the benchmarked callable ``X -> K(X, X)`` for ``method``.

    Parameters
    ----------
    method : {"sklearn_ntk", "scikit-ntk", "naive"}
        Implementation to use.
    n_jobs : int or None, default=None
        Passed to our ``NTK`` only (None keeps its default).

    Returns
    -------
    kernel : callable or None
        None if the implementation cannot be imported.
    """
    try:
        return FACTORIES[method](n_jobs=n_jobs)
    except ImportError:
        return None


def make_data(n_samples, n_features=N_FEATURES, seed=SEED):
    """Standard normal inputs, reproducible for a given size."""
    return np.random.default_rng(seed).standard_normal((n_samples, n_features))


def max_relative_difference(actual, reference):
    """Largest elementwise ``|actual - reference| / |reference|``.

    Denominators are floored at 1e-12 max|reference| so that a (rare) entry
    near zero cannot dominate; all depth >= 2 ReLU NTK entries are positive.
    """
    actual = np.asarray(actual)
    reference = np.asarray(reference)
    floor = 1e-12 * np.max(np.abs(reference))
    scale = np.maximum(np.abs(reference), floor)
    return float(np.max(np.abs(actual - reference) / scale))


# ---------------------------------------------------------------------------
# Agreement checks on a small problem.
# ---------------------------------------------------------------------------


def check_agreement(n_samples=400, n_jobs=None):
    """Print how closely the implementations agree on a small problem.

    scikit-ntk 1.2.1 computes (for ``X`` with ``n0`` features, its depth D = L-1)::

        Σ⁰ = X Xᵀ,  K⁰ = Σ⁰ + b²
        Σʰ = 2 E[relu(u) relu(v)],  Σ̇ʰ = 2 E[relu'(u) relu'(v)]   under Σʰ⁻¹
        Kʰ = Kʰ⁻¹ Σ̇ʰ + Σʰ + b²,     output Kᴰ / ((D + 1)(b² + 1))

    Its forward covariance Σ never contains b² (the biases act as if
    initialised at zero; b² only enters through the bias gradients), unlike
    our kernel (and the NTK paper's and neural-tangents'), where β² enters
    the forward covariance Σˡ of every layer (``_naive.py`` states the
    recursion).  Hence:

    * b = β = 0: exact, ``skntk = n0 2^(L-1) / L * Θᴸ(σ_w = 1)``.
    * b > 0: ``skntk = n0 / (2 L (b² + 1)) * Θᴸ_zero-bias-init(σ_w = √2,
      β = b √(2 / n0))``; no choice of our (beta, weight_std) reproduces it.

    Parameters
    ----------
    n_samples : int, default=400
        Size of the check problem.
    n_jobs : int or None, default=None
        Passed to our ``NTK``.

    Returns
    -------
    lines : list of str
        Human-readable results (also printed).
    """
    from _naive import relu_ntk_gram_naive

    X = make_data(n_samples, seed=SEED + 1)
    n0 = X.shape[1]
    L = DEPTH
    naive = relu_ntk_gram_naive(X, depth=L, beta=BETA, weight_std=WEIGHT_STD)[0]
    lines = [f"Agreement checks (n = {n_samples}, d = {n0}, depth {L}, ReLU):"]

    # Naive vs the reference value (x = (1, 0), x' = (cos 1, sin 1)).
    x_pair = np.array([[1.0, 0.0], [np.cos(1.0), np.sin(1.0)]])
    theta_pair = relu_ntk_gram_naive(x_pair, depth=4, beta=0.1, weight_std=1.0)[0]
    lines.append(
        f"- naive vs the reference Θ⁴(x, x') = {REFERENCE_THETA4} (x = (1, 0), "
        "x' = (cos 1, sin 1), β = 0.1, σ_w = 1; checked against neural-tangents): "
        f"rel. diff {abs(theta_pair[0, 1] / REFERENCE_THETA4 - 1):.1e}"
    )

    ours_kernel = make_kernel("sklearn_ntk", n_jobs=n_jobs)
    if ours_kernel is not None:
        ours = ours_kernel(X)
        diff = max_relative_difference(ours, naive)
        lines.append(f"- sklearn_ntk vs naive: max rel. diff {diff:.2e}")
        theta_ours = ours_kernel(x_pair)
        lines.append(
            "- sklearn_ntk vs the reference Θ⁴(x, x'): rel. diff "
            f"{abs(theta_ours[0, 1] / REFERENCE_THETA4 - 1):.1e}"
        )
        diag = ours_kernel.diag(X)
        n_diag_mismatch = int(np.count_nonzero(diag != np.diag(ours)))
        lines.append(
            f"- sklearn_ntk diag(X) vs np.diag(K(X)): {n_diag_mismatch} of "
            f"{n_samples} entries not bit-identical "
            f"(max rel. diff {max_relative_difference(diag, np.diag(ours)):.1e})"
        )
        lines.append(f"- sklearn_ntk K symmetric: {bool(np.array_equal(ours, ours.T))}")
    else:
        lines.append("- sklearn_ntk: not installed, skipped")

    try:
        from skntk import NeuralTangentKernel
    except ImportError:
        lines.append("- scikit-ntk: not installed, skipped")
    else:
        # beta = 0: exact mapping to our kernel.
        skntk0 = NeuralTangentKernel(depth=L - 1, bias=0.0)(X)
        naive0 = relu_ntk_gram_naive(X, depth=L, beta=0.0, weight_std=1.0)[0]
        scale0 = n0 * 2.0 ** (L - 1) / L
        lines.append(
            f"- scikit-ntk(depth={L - 1}, bias=0) vs {scale0:g} x naive(beta=0): "
            f"max rel. diff {max_relative_difference(skntk0, scale0 * naive0):.2e}"
        )
        # beta > 0: it is the zero-bias-initialisation kernel, not ours.
        skntk_b = NeuralTangentKernel(depth=L - 1, bias=BETA)(X)
        zero_init = relu_ntk_gram_naive(
            X, depth=L, beta=BETA * np.sqrt(2.0 / n0), weight_std=np.sqrt(2.0),
            bias_in_forward=False,
        )[0]
        scale_b = n0 / (2.0 * L * (BETA**2 + 1.0))
        lines.append(
            f"- scikit-ntk(depth={L - 1}, bias={BETA}) vs {scale_b:g} x "
            f"naive zero-bias-init(weight_std=√2, beta={BETA}·√(2/{n0})): "
            f"max rel. diff {max_relative_difference(skntk_b, scale_b * zero_init):.2e}"
        )
        # And against our kernel with the best single scale factor: not a match.
        best_scale = float(np.sum(skntk_b * naive) / np.sum(naive * naive))
        lines.append(
            f"- scikit-ntk(bias={BETA}) vs best-scaled ours(beta={BETA}) "
            f"(scale {best_scale:.4g}): max rel. diff "
            f"{max_relative_difference(skntk_b, best_scale * naive):.2e} "
            "(different kernel for beta > 0)"
        )
    for line in lines:
        print(line)
    return lines


# ---------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------


def run_timing(sizes, methods, repeats, time_cap, cell_budget, n_jobs=None):
    """Time every method at every size; return one record per (n, method).

    The repeats are interleaved (method A, B, C, A, B, C, ...; see
    ``_harness.interleaved``) rather than run back to back, so that load from
    other processes on a noisy machine spreads over all methods instead of
    penalising whichever ran at the wrong moment.

    Parameters
    ----------
    sizes : list of int
        Numbers of samples, run in increasing order.
    methods : list of str
        Implementations to time.
    repeats : int
        Maximum number of timed runs per (method, n).
    time_cap : float
        A method whose median exceeds this many seconds is skipped at larger n.
    cell_budget : float
        A (method, n) stops repeating once one more run would likely take its
        total past this many seconds; at least one run is always made.
    n_jobs : int or None, default=None
        Passed to our ``NTK``.

    Returns
    -------
    records : list of dict
        Keys ``n``, ``method`` and either ``times``, ``median``, ``min`` (and
        ``cpu_times``, ``cpu_median`` and ``rel_diff_vs_naive`` for ours) or
        ``skipped``.
    """
    simd_level = _harness.simd_level()
    kernels = {}
    for method in methods:
        kernel = make_kernel(method, n_jobs=n_jobs)
        if kernel is None:
            print(f"{method}: not installed, skipped")
            continue
        kernel(make_data(200))  # warm-up: imports, first-touch allocations
        kernels[method] = kernel

    records = []
    too_slow_at = {}  # method -> n at which its median exceeded time_cap
    for n in sorted(sizes):
        X = make_data(n)
        arccos = []  # numpy's arccos cost, ns/element, after every round
        timings, outputs = _harness.interleaved(
            {m: (lambda kernel=kernels[m]: kernel(X))
             for m in kernels if m not in too_slow_at},
            repeats, budget=cell_budget, keep={"sklearn_ntk", "naive"},
            after_round=lambda: arccos.append(
                _harness.arccos_ns_per_element(repeats=3)))
        for method in kernels:
            record = {"n": n, "method": method}
            if method in too_slow_at:
                record["skipped"] = f"> {time_cap:g} s at n = {too_slow_at[method]}"
                records.append(record)
                continue
            timing = timings[method]
            record.update(times=timing.wall, median=timing.median, min=min(timing.wall),
                          cpu_times=timing.cpu, cpu_median=timing.cpu_median,
                          simd_level=simd_level, arccos_ns_per_element=arccos,
                          arccos_median=float(np.median(arccos)))
            if method == "sklearn_ntk" and "naive" in outputs:
                record["rel_diff_vs_naive"] = max_relative_difference(
                    outputs["sklearn_ntk"], outputs["naive"])
            records.append(record)
            print(f"n={n:>6} {method:<12} median {record['median']:8.3f} s "
                  f"over {len(timing.wall)} run(s) [{simd_level}; arccos "
                  f"{record['arccos_median']:.1f} ns/element]", flush=True)
            if record["median"] > time_cap:
                too_slow_at[method] = n
        del outputs
    return records


def format_timing_table(records):
    """Markdown table: median times and speed-ups (other's median / this median).

    Speed-ups are ratios of median wall times; the CPU column is the median
    CPU time of the process over the same runs.
    """
    medians = {(r["n"], r["method"]): r.get("median") for r in records}
    header = ["n", "method", "runs", "median [s]", "min [s]", "median CPU [s]",
              "speed-up vs scikit-ntk", "speed-up vs naive",
              "max rel. diff vs naive", "SIMD", "arccos [ns/element]"]
    rows = []
    for r in records:
        if "skipped" in r:
            rows.append([r["n"], r["method"], 0, f"skipped ({r['skipped']})"]
                        + [""] * 7)
            continue
        ratios = []
        for other in ("scikit-ntk", "naive"):
            other_median = medians.get((r["n"], other))
            ratios.append(f"{other_median / r['median']:.2f}x" if other_median else "–")
        diff = r.get("rel_diff_vs_naive")
        rows.append([r["n"], r["method"], len(r["times"]), f"{r['median']:.3f}",
                     f"{r['min']:.3f}", f"{r['cpu_median']:.3f}"] + ratios
                    + [f"{diff:.1e}" if diff is not None else "", r["simd_level"],
                       f"{r['arccos_median']:.1f}"])
    return _harness.markdown_table(header, rows, align=["r", "l"] + ["r"] * 7
                                   + ["l", "r"])


# ---------------------------------------------------------------------------
# Peak memory (one fresh subprocess per measurement).
# ---------------------------------------------------------------------------


def memory_worker(method, n, n_jobs=None):
    """Body of the subprocess: build one Gram matrix, print a JSON report."""
    kernel = make_kernel(method, n_jobs=n_jobs)
    if kernel is None:
        print(json.dumps({"error": f"{method} not installed"}))
        return
    X = make_data(n)
    # RSS before the computation: interpreter, numpy/scipy/sklearn, X.
    baseline = _harness.rss_bytes()
    K = kernel(X)
    print(json.dumps({"peak_rss": _harness.peak_rss_bytes(), "baseline_rss": baseline,
                      "output_bytes": K.nbytes, "finite": bool(np.isfinite(K).all())}))


def run_memory(sizes, methods, n_jobs=None, fallback_sizes=(10000, 5000, 2000)):
    """Measure the peak RSS of a fresh process per (method, n)."""
    records = []
    available = _harness.available_memory_bytes()
    for method in methods:
        for n in sizes:
            run_n = n
            expected = EXPECTED_MEMORY_FACTOR[method] * 8.0 * n * n
            if available is not None and expected > 0.6 * available:
                smaller = [m for m in fallback_sizes
                           if m < n and EXPECTED_MEMORY_FACTOR[method] * 8.0 * m * m
                           < 0.6 * available]
                if not smaller:
                    records.append({"method": method, "n": n,
                                    "error": "does not fit in memory"})
                    continue
                run_n = smaller[0]
                print(f"{method}: n = {n} would need ~{expected / GIB:.1f} GiB "
                      f"(available {available / GIB:.1f} GiB); using n = {run_n}")
            args = ["--_memory-worker", method, run_n]
            if n_jobs is not None:
                args += ["--n-jobs", n_jobs]
            record = {"method": method, "n": run_n}
            record.update(_harness.run_child(os.path.abspath(__file__), args))
            records.append(record)
            print(f"{method} n={run_n}: {record}", flush=True)
    return records


def format_memory_table(records):
    """Markdown table of peak RSS relative to the output size."""
    header = ["method", "n", "output [GiB]", "peak RSS [GiB]", "peak / output",
              "(peak - baseline) / output", "baseline RSS [GiB]", "wall [s]"]
    rows = []
    for r in records:
        if "error" in r:
            rows.append([r["method"], r["n"], "", r["error"], "", "", "", ""])
            continue
        out, peak, base = r["output_bytes"], r["peak_rss"], r["baseline_rss"]
        rows.append([
            r["method"], r["n"], f"{out / GIB:.2f}", f"{peak / GIB:.2f}",
            f"{peak / out:.2f}",
            f"{(peak - base) / out:.2f}" if base is not None else "–",
            f"{base / GIB:.3f}" if base is not None else "–", f"{r['wall']:.1f}"])
    return _harness.markdown_table(header, rows, align=["l"] + ["r"] * 7)


# ---------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark the ReLU NTK Gram matrix (depth 4, beta 0.1, d = 100).")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="numbers of samples n (default 1000 2000 5000 10000; "
                             "15000 with --memory)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="maximum timed runs per (method, n) (default 3)")
    parser.add_argument("--methods", nargs="+", choices=ALL_METHODS,
                        default=list(ALL_METHODS), help="implementations to run")
    parser.add_argument("--memory", action="store_true",
                        help="measure the peak RSS of a fresh process instead of time")
    parser.add_argument("--time-cap", type=float, default=120.0,
                        help="skip a method at larger n once its median exceeded "
                             "this many seconds (default 120)")
    parser.add_argument("--cell-budget", type=float, default=180.0,
                        help="stop repeating a (method, n) once its runs would take "
                             "longer than this in total (default 180 s)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="n_jobs for our NTK (default: its own default)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the small agreement check")
    parser.add_argument("--json", default=None, help="also write the records here")
    _harness.add_output_argument(parser, "gram")
    parser.add_argument("--_memory-worker", nargs=2, metavar=("METHOD", "N"),
                        default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args._memory_worker is not None:
        method, n = args._memory_worker
        memory_worker(method, int(n), n_jobs=args.n_jobs)
        return

    environment = _harness.print_header()
    print(f"K(X, X), X ~ N(0, I) with d = {N_FEATURES}, depth {DEPTH}, ReLU, "
          f"beta = {BETA}, weight_std = {WEIGHT_STD}, float64\n")
    check = []
    if args.memory:
        sizes = args.sizes or [15000]
        records = run_memory(sizes, args.methods, n_jobs=args.n_jobs)
        section, heading = "memory", "Peak memory of a fresh process"
        table = format_memory_table(records)
    else:
        if not args.no_check:
            check = check_agreement(n_jobs=args.n_jobs)
            print()
        sizes = args.sizes or [1000, 2000, 5000, 10000]
        records = run_timing(sizes, args.methods, args.repeats, args.time_cap,
                             args.cell_budget, n_jobs=args.n_jobs)
        section, heading = "timing", "Timing"
        table = format_timing_table(records)
    print()
    print(f"Measured on {_harness.short(environment)}\n")
    print(table)
    print()
    markdown = ("\n".join(check[:1] + [""] + check[1:]) + "\n\n" if check else "") + table
    _harness.write_section(
        args.output, TITLE, section, heading, markdown,
        {"records": records, "agreement": check}, _harness.run_metadata(environment, argv),
        order=("timing", "memory"))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"environment": environment, "records": records}, handle,
                      indent=1)


if __name__ == "__main__":
    main()
