"""Regression benchmark: infinitely wide networks against RBF kernel methods.

What it measures
----------------
Test R² (mean ± std over an outer 5-fold cross-validation, shuffled with a
fixed seed) and wall-clock time (fit + predict, summed over the folds) on the
regression datasets available offline with scikit-learn:

``diabetes``
    ``load_diabetes`` (442 samples, 10 features).
``linnerud``
    ``load_linnerud`` (20 samples, 3 features, 3 targets; R² averaged over
    the targets).
``friedman1``, ``friedman2``, ``friedman3``
    ``make_friedman1/2/3`` (200 samples, seed 0, noise 1.0 / 100 / 0.1): the
    classic synthetic benchmarks, generated, not downloaded.

Every method sees standardised inputs (``StandardScaler``) and standardised
targets (``TransformedTargetRegressor`` or ``normalize_y=True``).  Methods:

``NTKRegressor`` / ``NNGPRegressor``
    Inner 3-fold ``GridSearchCV`` over depth 1..5 and t in {1, 10, 10², 10³,
    10⁴, inf} (relu, beta=0.1), with a ``joblib.Memory`` so that the t grid
    reuses each fold's kernel and decomposition.
``GPR-NTK`` / ``GPR-NNGP``
    ``GaussianProcessRegressor(NTK(depth) + WhiteKernel())`` (resp. NNGP),
    beta, weight_std (bounds 0.1..10) and the noise level fitted by maximising
    the marginal likelihood (analytic gradients), depth 1..5 chosen by the
    largest log marginal likelihood.
``KRR-RBF``
    ``KernelRidge(kernel="rbf")``, inner 3-fold ``GridSearchCV`` over alpha in
    10^-3..10^1 and gamma in 10^-3..10^1 divided by the number of features.
``GPR-RBF``
    ``GaussianProcessRegressor(ConstantKernel() * RBF() + WhiteKernel())``
    (isotropic), marginal likelihood maximised with 2 optimizer restarts.

How to run
----------
From the repository root::

    python benchmarks/bench_regression.py            # about a minute
    python benchmarks/bench_regression.py --quick    # diabetes only

Results go to ``benchmarks/results/regression.md`` (and ``.rst`` for the
docs, ``.json``), under the machine (CPU, SIMD level, BLAS, versions) and the
exact command; ``--quick`` writes ``regression_quick.*``, ``--output STEM``
``STEM.*``.  (The results were called ``regression_table.*`` before.)
"""

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import (load_diabetes, load_linnerud, make_friedman1,
                              make_friedman2, make_friedman3)
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402  (also puts the checkout's sklearn_ntk on the path)
import _uci  # noqa: E402

import sklearn_ntk  # noqa: E402
from sklearn_ntk import NNGP, NTK  # noqa: E402

DEPTHS = [1, 2, 3, 4, 5]
T_GRID = [1.0, 10.0, 100.0, 1e3, 1e4, np.inf]
SEED = 0
WEIGHT_STD_BOUNDS = (0.1, 10.0)


def datasets(quick=False):
    """(name, X, y) of the regression problems."""
    data = [("diabetes",) + load_diabetes(return_X_y=True)]
    if quick:
        return data
    X, Y = load_linnerud(return_X_y=True)
    data.append(("linnerud", X, Y))
    data.append(("friedman1",) + make_friedman1(200, noise=1.0, random_state=SEED))
    data.append(("friedman2",) + make_friedman2(200, noise=100.0, random_state=SEED))
    data.append(("friedman3",) + make_friedman3(200, noise=0.1, random_state=SEED))
    return data


class BestEvidenceGPR(RegressorMixin, BaseEstimator):
    """GaussianProcessRegressor over several kernels; keeps the best evidence."""

    def __init__(self, kernels=(), n_restarts_optimizer=0):
        self.kernels = kernels
        self.n_restarts_optimizer = n_restarts_optimizer

    def fit(self, X, y):
        best = None
        for kernel in self.kernels:
            gpr = GaussianProcessRegressor(
                kernel=kernel, normalize_y=True, random_state=SEED,
                n_restarts_optimizer=self.n_restarts_optimizer,
            ).fit(X, y)
            if best is None or gpr.log_marginal_likelihood_value_ > \
                    best.log_marginal_likelihood_value_:
                best = gpr
        self.gpr_ = best
        return self

    def predict(self, X):
        return self.gpr_.predict(X)


def scaled(estimator, scale_y=True):
    model = make_pipeline(StandardScaler(), estimator)
    if scale_y:
        model = TransformedTargetRegressor(regressor=model, transformer=StandardScaler())
    return model


def methods(memory, n_features):
    network_grid = {"depth": DEPTHS, "t": T_GRID}
    gammas = [10.0**k / n_features for k in range(-3, 2)]
    out = {}
    if hasattr(sklearn_ntk, "NTKRegressor"):
        out["NTKRegressor"] = scaled(GridSearchCV(
            sklearn_ntk.NTKRegressor(memory=memory), network_grid, cv=3))
    if hasattr(sklearn_ntk, "NNGPRegressor"):
        out["NNGPRegressor"] = scaled(GridSearchCV(
            sklearn_ntk.NNGPRegressor(memory=memory), network_grid, cv=3))
    # The kernels scale like weight_std ** (2 depth): within the default bounds
    # (1e-5, 1e5) L-BFGS's first steps overflow and it stops at the start.
    bounds = dict(weight_std_bounds=WEIGHT_STD_BOUNDS)
    out["GPR-NTK"] = scaled(BestEvidenceGPR(
        [NTK(depth=d, **bounds) + WhiteKernel(0.1) for d in DEPTHS]), scale_y=False)
    out["GPR-NNGP"] = scaled(BestEvidenceGPR(
        [NNGP(depth=d, **bounds) + WhiteKernel(0.1) for d in DEPTHS]), scale_y=False)
    out["KRR-RBF"] = scaled(GridSearchCV(
        KernelRidge(kernel="rbf"),
        {"alpha": [10.0**k for k in range(-3, 2)], "gamma": gammas}, cv=3))
    out["GPR-RBF"] = scaled(BestEvidenceGPR(
        [ConstantKernel() * RBF(1.0) + WhiteKernel(0.1)], n_restarts_optimizer=2),
        scale_y=False)
    return out


def _choice(model):
    """Hyperparameters the fitted model selected, as a short string."""
    inner = model.regressor_ if hasattr(model, "regressor_") else model
    final = inner[-1]
    if isinstance(final, GridSearchCV):
        params = final.best_params_
        return ", ".join(
            f"L={v}" if k == "depth" else f"{k}={'inf' if v == np.inf else f'{v:g}'}"
            for k, v in params.items())
    if isinstance(final, BestEvidenceGPR):
        kernel = final.gpr_.kernel_
        first = kernel.k1
        if hasattr(first, "depth"):
            return f"L={first.depth}, beta={first.beta:.2g}, w={first.weight_std:.2g}"
        return str(kernel)
    return ""


def run(quick=False):
    rows = []
    # Single-threaded BLAS: on these small problems a multi-threaded BLAS
    # spends more time waking (or, on a busy machine, spinning) threads than
    # computing.
    with tempfile.TemporaryDirectory(prefix="bench_regression_") as cache, \
            threadpool_limits(limits=1, user_api="blas"):
        memory = joblib.Memory(cache, verbose=0)
        for name, X, y in datasets(quick):
            outer = KFold(5, shuffle=True, random_state=SEED)
            result = {}
            for label, model in methods(memory, X.shape[1]).items():
                scores, choices, seconds, cpu = [], [], 0.0, 0.0
                for train, test in outer.split(X):
                    fitted = clone(model)
                    start, cpu_start = time.perf_counter(), time.process_time()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fitted.fit(X[train], y[train])
                        prediction = fitted.predict(X[test])
                    seconds += time.perf_counter() - start
                    cpu += time.process_time() - cpu_start
                    scores.append(r2_score(y[test], prediction))
                    choices.append(_choice(fitted))
                result[label] = {"r2": float(np.mean(scores)),
                                 "r2_std": float(np.std(scores)),
                                 "seconds": seconds, "cpu_seconds": cpu,
                                 "choices": choices}
                print(f"{name:10s} {label:14s} R² {np.mean(scores):6.3f} ± "
                      f"{np.std(scores):.3f}  {seconds:6.1f} s ({cpu:.1f} s CPU)",
                      flush=True)
            rows.append({"dataset": name, "n": X.shape[0], "d": X.shape[1],
                         "outputs": 1 if y.ndim == 1 else y.shape[1],
                         "results": result})
    return rows


def render(record):
    rows = record["datasets"]
    labels = list(rows[0]["results"])
    header = ["Dataset", "n", "d"] + labels
    r2_rows, time_rows = [], []
    for row in rows:
        best = max(row["results"][m]["r2"] for m in labels)
        cells = []
        for m in labels:
            res = row["results"][m]
            text = f"{res['r2']:.3f} ± {res['r2_std']:.3f}"
            cells.append(f"**{text}**" if res["r2"] == best else text)
        r2_rows.append([row["dataset"], row["n"], row["d"]] + cells)
        time_rows.append([row["dataset"], row["n"], row["d"]] + [
            f"{row['results'][m]['seconds']:.1f} ({row['results'][m]['cpu_seconds']:.1f})"
            for m in labels])
    r2 = np.array([[row["results"][m]["r2"] for m in labels] for row in rows])
    ranks = _uci.friedman_ranks(r2)
    mean_r2 = ["Mean rank (1 = best)", "", ""] + [f"{rank:.2f}" for rank in ranks]
    total = ["Total", "", ""] + [
        f"{sum(row['results'][m]['seconds'] for row in rows):.1f} "
        f"({sum(row['results'][m]['cpu_seconds'] for row in rows):.1f})" for m in labels]
    choice_header = ["Dataset"] + labels
    choice_rows = [[row["dataset"]] + ["; ".join(row["results"][m]["choices"])
                                       for m in labels] for row in rows]
    meta = record["meta"]
    machine = "\n".join(_harness.environment_markdown(meta))
    intro = (f"{meta['note'][0].upper()}{meta['note'][1:]}; total wall time "
             f"{meta['wall_seconds']:.0f} s. Test R² is the "
             "mean ± std over an outer shuffled 5-fold cross-validation (seed 0); the "
             "best of each row is in bold. Time: fit + predict in seconds, wall-clock "
             "(CPU in parentheses), summed over the 5 folds, hyperparameter search "
             "included; BLAS single-threaded.")
    md = ["# Regression benchmark", "", machine, intro, "", "## Test R²", "",
          _harness.markdown_table(header, r2_rows + [mean_r2]), "",
          "## Time: wall (CPU) seconds", "",
          _harness.markdown_table(header, time_rows + [total]), "",
          "## Selected hyperparameters (one per outer fold)", "",
          _harness.markdown_table(choice_header, choice_rows,
                                  align=["l"] * len(choice_header)), ""]
    rst = [machine.replace("`", "``"), intro.replace("`", "``"), "",
           ".. rubric:: Test R²", "",
           _harness.rst_table(header, r2_rows + [mean_r2]), "",
           ".. rubric:: Time: wall (CPU) seconds", "",
           _harness.rst_table(header, time_rows + [total]), "",
           ".. rubric:: Selected hyperparameters (one per outer fold)", "",
           _harness.rst_table(choice_header, choice_rows), ""]
    return "\n".join(md), "\n".join(rst)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="diabetes only")
    parser.add_argument("--output", type=Path, default=None,
                        help="output stem (default benchmarks/results/"
                             "regression[_quick])")
    parser.add_argument("--note", default="machine shared with other jobs")
    parser.add_argument("--from-json", type=Path,
                        help="re-render the tables of a results file and exit")
    args = parser.parse_args(argv)
    if args.from_json:
        record = json.loads(args.from_json.read_text())
        stem = args.output or args.from_json.with_suffix("")
    else:
        environment = _harness.print_header()
        start = time.perf_counter()
        rows = run(args.quick)
        record = {"meta": _harness.run_metadata(
            environment, argv, note=args.note,
            wall_seconds=time.perf_counter() - start), "datasets": rows}
        stem = args.output or _harness.RESULTS / (
            "regression_quick" if args.quick else "regression")
    md, rst = render(record)
    print(md)
    _harness.write_results(stem, md, record, rst)


if __name__ == "__main__":
    main()
