"""Benchmarks of NTKRegressor: LAPACK drivers, fit + predict, GridSearchCV with
``memory``, staged_predict.

    python benchmarks/bench_estimators.py                 # everything
    python benchmarks/bench_estimators.py --only drivers  # one section
    python benchmarks/bench_estimators.py --sizes 1000 2000 --repeats 3
    python benchmarks/bench_estimators.py --only fit --sizes 300 --repeats 1 --output /tmp/est

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

SECTIONS = ["drivers", "fit", "grid", "staged"]
TITLE = "Estimator benchmarks (NTKRegressor)"


def data(n, seed=0):
    X, y = make_friedman1(n_samples=n, n_features=10, noise=0.5, random_state=seed)
    return X, y


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
    print(f"\n### LAPACK drivers: {title}\n", flush=True)
    print(_harness.markdown_table(header, []), flush=True)
    rows, data_rows = [], []
    for n in sizes:
        X, _ = data(n)
        K = NTK(depth=3)(X) + 1e-10 * np.eye(n)
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
    print(f"\n### {title}\n", flush=True)
    print(_harness.markdown_table(header, []), flush=True)
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=SECTIONS, nargs="*")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000, 4000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                        help="BLAS threads for the driver benchmark")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for everything (0: library default)")
    _harness.add_output_argument(parser, "estimators")
    args = parser.parse_args(argv)
    sections = args.only or SECTIONS
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
