"""Benchmarks of NTKRegressor: LAPACK drivers, fit + predict, GridSearchCV with
``memory``, staged_predict.

    python benchmarks/bench_estimators.py                 # everything
    python benchmarks/bench_estimators.py --only drivers  # one section
    python benchmarks/bench_estimators.py --sizes 1000 2000 --repeats 3

Times are medians over ``--repeats`` runs (the machines are shared: medians,
not means).  Results are printed as Markdown tables, under a header that gives
the CPU, its SIMD level, BLAS and versions (``_environment.py``); every table's
title repeats the CPU and SIMD level.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import scipy.linalg
from sklearn.datasets import make_friedman1
from sklearn.model_selection import GridSearchCV, KFold
from threadpoolctl import threadpool_limits

from sklearn_ntk import NTK, NTKRegressor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _environment  # noqa: E402

# "CPU, SIMD level", set in main() and printed in every table's title.
MACHINE = _environment.cpu_model()


def median_time(function, repeats, setup=None):
    times = []
    for _ in range(repeats):
        argument = setup() if setup is not None else None
        start = time.perf_counter()
        function(argument) if setup is not None else function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


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
    of load on the shared machine hits all drivers alike.  Accuracy: the
    eigen-residual max|KV − VΛ|/λmax and the loss of orthogonality max|VᵀV − I|.
    """
    print(f"\n### LAPACK drivers ({threads} BLAS thread(s)), seconds, "
          f"median of {repeats} interleaved runs [residual, orthogonality]; "
          f"{MACHINE}\n")
    print("| n | " + " | ".join(DRIVERS) + " |")
    print("|---|" + "---|" * len(DRIVERS))
    for n in sizes:
        X, _ = data(n)
        K = NTK(depth=3)(X) + 1e-10 * np.eye(n)
        names = [name for name in DRIVERS if not (name == "scipy ev" and n > 2000)]
        times = {name: [] for name in names}
        errors = {}
        with threadpool_limits(limits=threads, user_api="blas"):
            for _ in range(repeats):
                for name in names:
                    A = np.asfortranarray(K)
                    start = time.perf_counter()
                    result = DRIVERS[name](A)
                    times[name].append(time.perf_counter() - start)
                    if name != "cholesky" and name not in errors:
                        w, V = result
                        errors[name] = (
                            np.abs(K @ V - V * w).max() / w.max(),
                            np.abs(V.T @ V - np.eye(n)).max(),
                        )
        row = []
        for name in DRIVERS:
            if name not in times:
                row.append("–")
                continue
            cell = f"{np.median(times[name]):.2f}"
            if name in errors:
                cell += " [{:.0e}, {:.0e}]".format(*errors[name])
            row.append(cell)
        print(f"| {n} | " + " | ".join(row) + " |", flush=True)


def bench_fit_predict(sizes, repeats, n_test):
    print(f"\n### fit + predict ({n_test} test points, depth 3, relu), seconds, "
          f"median of {repeats}; "
          f"{MACHINE}\n")
    print("| n_train | t = inf: fit | predict | predict(return_std) "
          "| t = 10: fit | predict | predict(return_std) |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        X, y = data(n + n_test)
        X_train, y_train, X_test = X[:n], y[:n], X[n:]
        row = []
        for t in [np.inf, 10.0]:
            reg = NTKRegressor(t=t)
            fit, _ = median_time(lambda: reg.fit(X_train, y_train), repeats)
            predict, _ = median_time(lambda: reg.predict(X_test), repeats)
            std, _ = median_time(lambda: reg.predict(X_test, return_std=True), repeats)
            row += [f"{fit:.2f}", f"{predict:.2f}", f"{std:.2f}"]
        print(f"| {n} | " + " | ".join(row) + " |", flush=True)


def bench_grid_search(repeats, n=1500):
    print(f"\n### GridSearchCV, 2 depths × 5 times × 3 folds on {n} samples "
          f"(refit=False, 1 BLAS thread), seconds, median of {repeats}; "
          f"{MACHINE}\n")
    X, y = data(n)
    grid = {"depth": [2, 4], "t": [1.0, 10.0, 100.0, 1000.0, np.inf]}
    cv = KFold(3, shuffle=True, random_state=0)
    results = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for label in ["memory=None", "memory=<dir>"]:
            times, scores = [], None
            for _ in range(repeats):
                cache = tempfile.mkdtemp() if label != "memory=None" else None
                search = GridSearchCV(NTKRegressor(memory=cache), grid, cv=cv, refit=False)
                start = time.perf_counter()
                search.fit(X, y)
                times.append(time.perf_counter() - start)
                scores = search.cv_results_["mean_test_score"]
                if cache:
                    shutil.rmtree(cache)
            results[label] = (float(np.median(times)), scores)
    plain, cached = results["memory=None"], results["memory=<dir>"]
    print("| memory | seconds | speed-up | best mean R² |")
    print("|---|---|---|---|")
    for label, (seconds, scores) in results.items():
        print(f"| {label} | {seconds:.1f} | {plain[0] / seconds:.1f}× | {scores.max():.4f} |")
    print(f"\nidentical cv scores: {np.array_equal(plain[1], cached[1])}", flush=True)


def bench_staged(repeats, n=2000, n_test=2000, n_times=20):
    print(f"\n### staged_predict over {n_times} times vs one finite-t predict "
          f"({n} train, {n_test} test), seconds, median of {repeats}; "
          f"{MACHINE}\n")
    X, y = data(n + n_test)
    reg = NTKRegressor(t=10.0).fit(X[:n], y[:n])
    times = np.geomspace(0.1, 1e4, n_times)
    single, _ = median_time(lambda: reg.predict(X[n:]), repeats)
    staged, _ = median_time(lambda: reg.staged_predict(X[n:], times), repeats)
    single_std, _ = median_time(lambda: reg.predict(X[n:], return_std=True), repeats)
    staged_std, _ = median_time(
        lambda: reg.staged_predict(X[n:], times, return_std=True), repeats
    )
    print("| | predict | staged_predict (20 times) | ratio |")
    print("|---|---|---|---|")
    print(f"| mean | {single:.2f} | {staged:.2f} | {staged / single:.2f} |")
    print(f"| mean + std | {single_std:.2f} | {staged_std:.2f} | {staged_std / single_std:.2f} |",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["drivers", "fit", "grid", "staged"], nargs="*")
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000, 4000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2],
                        help="BLAS threads for the driver benchmark")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for everything (0: library default)")
    args = parser.parse_args()
    sections = args.only or ["drivers", "fit", "grid", "staged"]
    if args.blas_threads:
        # The machines are shared: one BLAS thread gives reproducible figures
        # (threaded OpenBLAS on oversubscribed cores is several times slower).
        threadpool_limits(limits=args.blas_threads, user_api="blas")
    global MACHINE
    environment = _environment.print_header()
    MACHINE = _environment.short(environment)
    if "drivers" in sections:
        for threads in args.threads:
            bench_drivers(args.sizes, args.repeats, threads)
    if "fit" in sections:
        bench_fit_predict(args.sizes, args.repeats, n_test=1000)
    if "grid" in sections:
        bench_grid_search(args.repeats)
    if "staged" in sections:
        bench_staged(args.repeats)


if __name__ == "__main__":
    main()
