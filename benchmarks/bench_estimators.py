"""Benchmarks of NTKRegressor: LAPACK drivers, fit + predict, GridSearchCV with
``memory``, staged_predict, the finite-t solvers and the scale run.

    python benchmarks/bench_estimators.py                 # everything but the scale run
    python benchmarks/bench_estimators.py --only drivers  # one section
    python benchmarks/bench_estimators.py --sizes 1000 2000 --repeats 3
    python benchmarks/bench_estimators.py --only fit --sizes 300 --repeats 1 --output /tmp/est
    python benchmarks/bench_estimators.py --only krylov --sizes 4000 10000 20000
    python benchmarks/bench_estimators.py --only search   # 6 t x 3 folds vs 1 t
    python benchmarks/bench_estimators.py --only scale --scale-n 20000  # fresh process

Times are medians over ``--repeats`` runs, interleaved (every timed call of a
table once, then again: ``_harness.interleaved``), because the machines are
shared: medians, not means.  Data: ``make_friedman1`` (10 features), depth 3,
ReLU, beta = 0.1; one BLAS thread unless ``--blas-threads`` says otherwise.

Every section run replaces its own section of
``benchmarks/results/estimators.md`` (and ``.json``; ``--output STEM`` writes
``STEM.md`` and ``STEM.json`` instead), under the CPU, its SIMD level, BLAS,
versions and the exact command; the other sections and the figures recorded
earlier on other machines are kept.  The tables are printed as they are
measured.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import scipy.linalg
from sklearn.datasets import make_friedman1
from sklearn.model_selection import GridSearchCV, KFold
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402  (also puts the checkout's sklearn_ntk on the path)

from sklearn_ntk import NTK, NTKRegressor  # noqa: E402

SECTIONS = ["drivers", "fit", "grid", "staged", "krylov", "crossover", "search",
            "scale"]
TITLE = "Estimator benchmarks (NTKRegressor)"


def data(n, seed=0):
    X, y = make_friedman1(n_samples=n, n_features=10, noise=0.5, random_state=seed)
    return X, y


def ntk_gram(X):
    """The depth-3 NTK Gram matrix of ``X`` plus 1e-10 I: what the drivers
    and the crossover sections factor."""
    return NTK(depth=3)(X) + 1e-10 * np.eye(len(X))


def _print_heading(title, header):
    """Print a section's heading and its table's header row, before the rows
    are measured (each is printed as it comes)."""
    print(f"\n### {title}\n", flush=True)
    print(_harness.markdown_table(header, []), flush=True)


def _eigh(driver):
    def run(A):
        return scipy.linalg.eigh(A, driver=driver, overwrite_a=True, check_finite=False)

    return run


DRIVERS = {
    "scipy evd": _eigh("evd"),
    "scipy evr": _eigh("evr"),
    "scipy ev": _eigh("ev"),
    "numpy eigh": np.linalg.eigh,
    "cholesky": lambda A: scipy.linalg.cho_factor(A, overwrite_a=True, check_finite=False),
}


def bench_drivers(sizes, repeats, threads):
    """Symmetric eigendecomposition drivers and Cholesky on an NTK Gram matrix.

    Repeats are interleaved (every driver once, then again) so that a burst
    of load on the shared machine hits all drivers alike; each run gets a
    fresh Fortran-ordered copy, made untimed.  Accuracy: the eigen-residual
    max|KV − VΛ|/λmax and the loss of orthogonality max|VᵀV − I|.
    """
    title = (f"{threads} BLAS thread(s), seconds, median of {repeats} interleaved "
             "runs [residual, orthogonality]")
    header = ["n"] + list(DRIVERS)
    _print_heading(f"LAPACK drivers: {title}", header)
    rows, data_rows = [], []
    for n in sizes:
        X, _ = data(n)
        K = ntk_gram(X)
        names = [name for name in DRIVERS if not (name == "scipy ev" and n > 2000)]
        with threadpool_limits(limits=threads, user_api="blas"):
            timings, results = _harness.interleaved(
                {name: DRIVERS[name] for name in names}, repeats,
                argument=lambda name: np.asfortranarray(K),
                keep=[name for name in names if name != "cholesky"])
        errors = {}
        for name, (w, V) in results.items():
            errors[name] = (np.abs(K @ V - V * w).max() / w.max(),
                            np.abs(V.T @ V - np.eye(n)).max())
        del results
        row = [n]
        for name in DRIVERS:
            if name not in timings:
                row.append("–")
                continue
            cell = f"{timings[name].median:.2f}"
            if name in errors:
                cell += " [{:.0e}, {:.0e}]".format(*errors[name])
            row.append(cell)
        rows.append(row)
        data_rows.append({"n": n, "times": {k: t.wall for k, t in timings.items()},
                          "errors": {k: [float(e) for e in v] for k, v in errors.items()}})
        print(_harness.markdown_row(row), flush=True)
    table = _harness.markdown_table(header, rows)
    return f"### {title}\n\n{table}", {"threads": threads, "rows": data_rows}


def bench_fit_predict(sizes, repeats, n_test):
    title = (f"fit + predict ({n_test} test points, depth 3, relu), seconds, "
             f"median of {repeats} interleaved runs")
    header = ["n_train", "t = inf: fit", "predict", "predict(return_std)",
              "t = 10: fit", "predict", "predict(return_std)"]
    _print_heading(title, header)
    rows, data_rows = [], []
    for n in sizes:
        X, y = data(n + n_test)
        X_train, y_train, X_test = X[:n], y[:n], X[n:]
        row = [n]
        for t in [np.inf, 10.0]:
            reg = NTKRegressor(t=t)
            timings, _ = _harness.interleaved({
                "fit": lambda: reg.fit(X_train, y_train),
                "predict": lambda: reg.predict(X_test),
                "predict(return_std)": lambda: reg.predict(X_test, return_std=True),
            }, repeats, keep=())
            row += [f"{timing.median:.2f}" for timing in timings.values()]
            data_rows.append({"n": n, "t": str(t),
                              "times": {k: v.wall for k, v in timings.items()}})
        rows.append(row)
        print(_harness.markdown_row(row), flush=True)
    return (f"{title}\n\n{_harness.markdown_table(header, rows)}",
            {"n_test": n_test, "rows": data_rows})


def bench_grid_search(repeats, n=1500):
    title = (f"GridSearchCV, 2 depths × 5 times × 3 folds on {n} samples "
             f"(refit=False, 1 BLAS thread), seconds, median of {repeats} "
             "interleaved runs")
    print(f"\n### {title}\n", flush=True)
    X, y = data(n)
    grid = {"depth": [2, 4], "t": [1.0, 10.0, 100.0, 1000.0, np.inf]}
    cv = KFold(3, shuffle=True, random_state=0)

    with tempfile.TemporaryDirectory(prefix="bench_estimators_") as caches, \
            threadpool_limits(limits=1, user_api="blas"):
        def search(label):
            """A fresh search; with memory, on a fresh cache directory."""
            cache = tempfile.mkdtemp(dir=caches) if label != "memory=None" else None
            return GridSearchCV(NTKRegressor(memory=cache), grid, cv=cv, refit=False)

        timings, searches = _harness.interleaved(
            {label: (lambda s: s.fit(X, y)) for label in ["memory=None", "memory=<dir>"]},
            repeats, argument=search)
    scores = {label: s.cv_results_["mean_test_score"] for label, s in searches.items()}
    plain = timings["memory=None"].median
    rows = [[label, f"{timing.median:.1f}", f"{plain / timing.median:.1f}×",
             f"{scores[label].max():.4f}"] for label, timing in timings.items()]
    identical = bool(np.array_equal(scores["memory=None"], scores["memory=<dir>"]))
    table = _harness.markdown_table(["memory", "seconds", "speed-up", "best mean R²"],
                                    rows, align=["l", "r", "r", "r"])
    print(table + f"\n\nidentical cv scores: {identical}", flush=True)
    return (f"{title}\n\n{table}\n\nIdentical cv scores with and without memory: "
            f"{identical}.", {"times": {k: v.wall for k, v in timings.items()},
                             "identical_scores": identical})


def bench_staged(repeats, n=2000, n_test=2000, n_times=20):
    title = (f"staged_predict over {n_times} times vs one finite-t predict "
             f"({n} train, {n_test} test), seconds, median of {repeats} "
             "interleaved runs")
    print(f"\n### {title}\n", flush=True)
    X, y = data(n + n_test)
    reg = NTKRegressor(t=10.0).fit(X[:n], y[:n])
    times = np.geomspace(0.1, 1e4, n_times)
    X_test = X[n:]
    timings, _ = _harness.interleaved({
        "mean": lambda: reg.predict(X_test),
        "mean, staged": lambda: reg.staged_predict(X_test, times),
        "mean + std": lambda: reg.predict(X_test, return_std=True),
        "mean + std, staged": lambda: reg.staged_predict(X_test, times, return_std=True),
    }, repeats, keep=())
    medians = {key: timing.median for key, timing in timings.items()}
    rows = [[kind, f"{medians[kind]:.2f}", f"{medians[kind + ', staged']:.2f}",
             f"{medians[kind + ', staged'] / medians[kind]:.2f}"]
            for kind in ("mean", "mean + std")]
    table = _harness.markdown_table(
        ["", "predict", f"staged_predict ({n_times} times)", "ratio"], rows)
    print(table, flush=True)
    return f"{title}\n\n{table}", {"times": {k: v.wall for k, v in timings.items()}}


def bench_krylov(sizes, repeats, n_test, eigh_max, budget):
    """fit + predict at t = 10 (solver "krylov") against t = ∞ and "eigh".

    The three run interleaved in one process, so that their ratios hold
    under the shared machine's load; each repeats while its runs total less
    than ``budget`` seconds (at least once).  Above ``eigh_max`` training samples
    the eigendecomposition is not run: its time is extrapolated as N³
    from the largest size measured, and marked so.
    """
    title = (f"fit + predict ({n_test} test points, depth 3, relu), t = 10 with "
             f"solver=\"krylov\" vs t = ∞ (Cholesky) and solver=\"eigh\", seconds, "
             f"median of up to {repeats} interleaved runs (fewer past {budget:.0f} s "
             "in total: the runs column)")
    header = ["n_train", "t = ∞", "t = 10 krylov", "ratio to t = ∞", "t = 10 eigh",
              "eigh / krylov", "relative difference", "runs"]
    _print_heading(title, header)
    rows, data_rows = [], []
    measured_eigh = None
    for n in sizes:
        X, y = data(n + n_test)
        X_train, y_train, X_test = X[:n], y[:n], X[n:]
        runs = {
            "t = ∞": lambda: NTKRegressor().fit(X_train, y_train).predict(X_test),
            "t = 10 krylov": lambda: NTKRegressor(t=10.0, solver="krylov").fit(
                X_train, y_train).predict(X_test),
        }
        if n <= eigh_max:
            runs["t = 10 eigh"] = lambda: NTKRegressor(t=10.0, solver="eigh").fit(
                X_train, y_train).predict(X_test)
        timings, results = _harness.interleaved(runs, repeats, budget=budget)
        medians = {key: timing.median for key, timing in timings.items()}
        krylov = medians["t = 10 krylov"]
        if "t = 10 eigh" in medians:
            eigh = medians["t = 10 eigh"]
            measured_eigh = (n, eigh)
            eigh_cell = f"{eigh:.2f}"
            krylov_mean, eigh_mean = results["t = 10 krylov"], results["t = 10 eigh"]
            difference = (np.linalg.norm(krylov_mean - eigh_mean)
                          / np.linalg.norm(eigh_mean))
            difference_cell = f"{difference:.0e}"
        else:
            eigh = (None if measured_eigh is None
                    else measured_eigh[1] * (n / measured_eigh[0]) ** 3)
            eigh_cell = ("–" if eigh is None
                         else f"~{eigh:.0f} (N³ from {measured_eigh[0]})")
            difference, difference_cell = None, "–"
        row = [n, f"{medians['t = ∞']:.2f}", f"{krylov:.2f}",
               f"**{krylov / medians['t = ∞']:.2f}**", eigh_cell,
               "–" if eigh is None else f"{eigh / krylov:.0f}×", difference_cell,
               "/".join(str(len(timing.wall)) for timing in timings.values())]
        rows.append(row)
        data_rows.append({"n": n, "times": {k: t.wall for k, t in timings.items()},
                          "eigh_extrapolated": "t = 10 eigh" not in medians,
                          "eigh": eigh, "relative_difference": difference})
        print(_harness.markdown_row(row), flush=True)
        del results
    table = _harness.markdown_table(header, rows)
    return (f"### {title}\n\n{table}\n\nLoad average after the run: "
            f"{_load()}.", {"n_test": n_test, "rows": data_rows})


def bench_crossover(sizes, repeats):
    """Where solver="auto" switches: fit at t = 10, krylov vs eigh, small N.

    Also the cost of the eigendecomposition in triangular solves of the
    Krylov iteration (one step: two triangular solves with the N × N
    Cholesky factor), measured on the NTK Gram matrix with scipy directly.
    """
    title = (f"fit at t = 10, solver=\"krylov\" vs \"eigh\", and scipy's eigh in "
             f"Krylov steps (cho_solve of one vector), seconds, median of {repeats} "
             "interleaved runs")
    header = ["n_train", "fit krylov", "fit eigh", "eigh / krylov", "eigh", "one step",
              "eigh in steps"]
    _print_heading(title, header)
    rows, data_rows = [], []
    for n in sizes:
        X, y = data(n)
        K = ntk_gram(X)
        factor = scipy.linalg.cho_factor(K + np.median(np.diag(K)) * np.eye(n))
        vector = np.ones(n)
        timings, _ = _harness.interleaved({
            "krylov": lambda: NTKRegressor(t=10.0, solver="krylov").fit(X, y),
            "eigh": lambda: NTKRegressor(t=10.0, solver="eigh").fit(X, y),
            "scipy eigh": lambda: scipy.linalg.eigh(K, driver="evd"),
            # 20 solves per timed call: one is too short for the timer at small N.
            "20 steps": lambda: [
                scipy.linalg.cho_solve(factor, vector, check_finite=False)
                for _ in range(20)],
        }, repeats, keep=())
        medians = {key: timing.median for key, timing in timings.items()}
        step = medians["20 steps"] / 20
        row = [n, f"{medians['krylov']:.3f}", f"{medians['eigh']:.3f}",
               f"{medians['eigh'] / medians['krylov']:.1f}×",
               f"{medians['scipy eigh']:.3f}", f"{1e3 * step:.2f} ms",
               f"{medians['scipy eigh'] / step:.0f}"]
        rows.append(row)
        data_rows.append({"n": n, "times": {k: t.wall for k, t in timings.items()}})
        print(_harness.markdown_row(row), flush=True)
    table = _harness.markdown_table(header, rows)
    return (f"### {title}\n\n{table}\n\nLoad average after the run: {_load()}.",
            {"rows": data_rows})


def bench_search(repeats, n=2000):
    """GridSearchCV over 6 times vs 1 time, 3 folds, with memory, per solver.

    Every search starts on a fresh cache directory; the ratio is the cost
    of five more times once each fold's kernel, factorisation and test
    kernel are cached.
    """
    title = (f"GridSearchCV with memory, 6 times × 3 folds vs 1 time × 3 folds on {n} "
             f"samples (refit=False, 1 BLAS thread), seconds, median of {repeats} "
             "interleaved runs")
    print(f"\n### {title}\n", flush=True)
    X, y = data(n)
    cv = KFold(3, shuffle=True, random_state=0)
    grids = {"1 time": {"t": [10.0]},
             "6 times": {"t": [0.1, 1.0, 10.0, 100.0, 1e3, 1e4]}}
    with tempfile.TemporaryDirectory(prefix="bench_estimators_") as caches:
        def search(key):
            solver, grid = key.split(", ")
            return GridSearchCV(NTKRegressor(solver=solver, memory=tempfile.mkdtemp(
                dir=caches)), grids[grid], cv=cv, refit=False)

        keys = [f"{solver}, {grid}" for solver in ("krylov", "eigh") for grid in grids]
        timings, searches = _harness.interleaved(
            {key: (lambda s: s.fit(X, y)) for key in keys}, repeats, argument=search)
    medians = {key: timing.median for key, timing in timings.items()}
    rows = [[solver, f"{medians[solver + ', 1 time']:.2f}",
             f"{medians[solver + ', 6 times']:.2f}",
             f"**{medians[solver + ', 6 times'] / medians[solver + ', 1 time']:.2f}**"]
            for solver in ("krylov", "eigh")]
    scores = {key: s.cv_results_["mean_test_score"] for key, s in searches.items()}
    difference = float(np.max(np.abs(scores["krylov, 6 times"]
                                     - scores["eigh, 6 times"])))
    table = _harness.markdown_table(["solver", "1 time", "6 times", "ratio"], rows)
    print(table + f"\n\nlargest score difference krylov - eigh: {difference:.1e}",
          flush=True)
    return (f"### {title}\n\n{table}\n\nLargest difference of the mean test scores "
            f"between the solvers: {difference:.1e}. Load average after the run: "
            f"{_load()}.", {"times": {k: v.wall for k, v in timings.items()},
                             "score_difference": difference})


def scale_child(n, n_test, t, n_jobs):
    """In a fresh process: fit + predict, wall time and peak RSS (JSON line)."""
    import json
    import time

    X, y = data(n + n_test)
    cpu_start = time.process_time()
    start = time.perf_counter()
    reg = NTKRegressor(t=t, n_jobs=n_jobs).fit(X[:n], y[:n])
    fitted = time.perf_counter()
    reg.predict(X[n:])
    done = time.perf_counter()
    print(json.dumps({"fit": fitted - start, "predict": done - fitted,
                      "total": done - start, "cpu": time.process_time() - cpu_start,
                      "peak_rss": _harness.peak_rss_bytes()}))


def bench_scale(n, n_test, times, n_jobs, blas_threads):
    """NTKRegressor(t, n_jobs).fit(X, y).predict(X_test) at large N, fresh processes.

    Peak memory is the child's peak resident set size (all of it: Python,
    numpy, the data), over 8 N² bytes, the size of the N × N kernel.  The
    CPU seconds of all the child's threads tell what the wall time would be
    on an idle machine (about half of them on two cores).
    """
    title = (f"NTKRegressor(t, n_jobs={n_jobs}).fit(X, y).predict(X_test), "
             f"N = {n}, {n_test} test points, {blas_threads} BLAS thread(s), one fresh "
             "process per t, one run each")
    header = ["t", "fit (s)", "predict (s)", "total (s)", "CPU (s, all threads)",
              "peak RSS (GB)", "peak / 8 N²"]
    _print_heading(title, header)
    rows, data_rows = [], []
    for t in times:
        load_before = _load()
        report = _harness.run_child(__file__, [
            "--scale-child", n, n_test, t, n_jobs, "--blas-threads", blas_threads])
        if "error" in report:
            row = [t, report["error"], "", "", "", "", ""]
        else:
            row = [t, f"{report['fit']:.0f}", f"{report['predict']:.1f}",
                   f"**{report['total']:.0f}**", f"{report['cpu']:.0f}",
                   f"{report['peak_rss'] / 1e9:.2f}",
                   f"**{report['peak_rss'] / (8 * n * n):.2f}**"]
        report.update(t=t, load_before=load_before, load_after=_load())
        rows.append(row)
        data_rows.append(report)
        print(_harness.markdown_row(row), f"(load before {load_before}, after "
              f"{report['load_after']})", flush=True)
    table = _harness.markdown_table(header, rows)
    loads = "; ".join(
        f"t = {r['t']}: {r['load_before']} before, {r['load_after']} after"
        for r in data_rows)
    return (f"### {title}\n\n{table}\n\nLoad averages (1, 5, 15 min): {loads}.",
            {"n": n, "n_test": n_test, "rows": data_rows})


def _load():
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=SECTIONS, nargs="*")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000, 4000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                        help="BLAS threads for the driver benchmark")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for everything (0: library default)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="krylov section: seconds after which runs stop repeating")
    parser.add_argument("--eigh-max", type=int, default=4000,
                        help="largest N at which the krylov section runs eigh")
    parser.add_argument("--small-sizes", type=int, nargs="*", default=[200, 500, 1000],
                        help="sizes of the crossover section")
    parser.add_argument("--scale-n", type=int, default=20000)
    parser.add_argument("--scale-times", type=float, nargs="*", default=[100.0])
    parser.add_argument("--scale-threads", type=int, default=2,
                        help="BLAS threads of the scale run (n_jobs=2 uses both cores)")
    parser.add_argument("--scale-child", type=float, nargs=4, help=argparse.SUPPRESS)
    _harness.add_output_argument(parser, "estimators")
    args = parser.parse_args(argv)
    if args.scale_child:
        n, n_test, t, n_jobs = args.scale_child
        threadpool_limits(limits=args.blas_threads, user_api="blas")
        scale_child(int(n), int(n_test), t, int(n_jobs))
        return
    # The scale run (minutes, GBs) only when asked for.
    sections = args.only or [section for section in SECTIONS if section != "scale"]
    if args.blas_threads:
        # The machines are shared: one BLAS thread gives reproducible figures
        # (threaded OpenBLAS on oversubscribed cores is several times slower).
        threadpool_limits(limits=args.blas_threads, user_api="blas")
    environment = _harness.print_header()
    meta = _harness.run_metadata(environment, argv)
    runs = {
        "drivers": ("LAPACK drivers for the eigendecomposition (NTK Gram matrix)",
                    lambda: [bench_drivers(args.sizes, args.repeats, threads)
                             for threads in args.threads]),
        "fit": ("fit + predict", lambda: bench_fit_predict(args.sizes, args.repeats,
                                                           n_test=1000)),
        "grid": ("GridSearchCV with memory", lambda: bench_grid_search(args.repeats)),
        "staged": ("staged_predict", lambda: bench_staged(args.repeats)),
        "krylov": ("Finite t without an eigendecomposition (solver=\"krylov\")",
                   lambda: bench_krylov(args.sizes, args.repeats, n_test=1000,
                                        eigh_max=args.eigh_max, budget=args.budget)),
        "crossover": ("Where solver=\"auto\" switches",
                      lambda: bench_crossover(args.small_sizes, args.repeats)),
        "search": ("GridSearchCV over t with memory: 6 times vs 1",
                   lambda: bench_search(args.repeats)),
        "scale": ("Scale: N = 20 000 at t = 100",
                  lambda: bench_scale(args.scale_n, 2000, args.scale_times, 2,
                                      args.scale_threads)),
    }
    for section in sections:
        heading, run = runs[section]
        print(f"\n[{section}] on {_harness.short(environment)}", flush=True)
        result = run()
        parts = result if isinstance(result, list) else [result]
        _harness.write_section(
            args.output, TITLE, section, heading,
            "\n\n".join(markdown for markdown, _ in parts),
            [data for _, data in parts], meta, order=SECTIONS)


if __name__ == "__main__":
    main()
