"""The 90 UCI classification datasets of Arora et al. (ICLR 2020).

What it measures
----------------
The protocol of Arora, Du, Li, Salakhutdinov, Wang & Yu, "Harnessing the Power
of Infinitely Wide Deep Nets on Small-data Tasks" (ICLR 2020), on the testbed of
Fernández-Delgado et al. (JMLR 2014): for every dataset, each method's
hyperparameters are chosen by accuracy on the train/validation split of
``conxuntos.dat`` (the first best in grid order wins, as in Arora et al.'s
code), and the reported accuracy is the mean test accuracy over the four
train/test pairs of ``conxuntos_kfold.dat`` with those hyperparameters.

Methods and grids
-----------------
``SVC-NTK``
    ``SVC(kernel="precomputed")`` on ``NTK(depth, activation="relu", beta=0.1,
    weight_std=1.0)``, depth 1..5, C in 10^-2, 10^-1, ..., 10^4.  libsvm stops
    after 10^6 iterations (``max_iter``); the fits stopped there are counted.
``SVC-NNGP``
    The same with the NNGP kernel.  Both kernels, at every depth, come from ONE
    pass of ``sklearn_ntk.kernels_by_depth(X, depth=5, ...)`` over all of a
    dataset's samples; every split then slices that Gram matrix.
``NTKClassifier``
    ``sklearn_ntk.NTKClassifier(depth, t)`` (the mean prediction of an infinitely
    wide network trained by gradient flow for time t on one-hot targets), depth
    1..5, t in 10^0, ..., 10^6 and inf: one fit (one eigendecomposition) per
    (split, depth), and ``staged_predict`` over the t grid.
``NTK log loss``
    ``sklearn_ntk.NTKClassifier(depth, t, loss="log_loss")``: the network
    trained by gradient flow on the cross-entropy, depth 1..5, t in 10^0,
    ..., 10^6 (finite: the flow has no limit on separable data); one fit per
    (split, depth) and ``staged_predict_proba`` over the t grid (one
    integration), with ``tol=1e-5`` (LOG_LOSS_TOL).  Besides accuracy, the mean test log loss and Brier score
    (Σ_k (p_k − 1[y = k])², averaged over samples) of ``predict_proba``.
``NTK calibrated``
    The squared-loss ``NTKClassifier`` with the depth and t that
    ``NTKClassifier`` selects, wrapped in
    ``CalibratedClassifierCV(method="sigmoid", cv=3)`` (fewer folds when a
    class has fewer than 3 training samples; none, and no score, below 2):
    the probabilities the squared loss gives after the usual recalibration,
    scored like the log-loss classifier's.
``SVC-RBF``
    ``SVC`` with the Gaussian kernel exp(-g/d ||x - x'||²), g in 10^-2..10^1, C
    in 10^-2..10^4 (the Gram matrix is built once per g).
``RF``
    ``RandomForestClassifier(n_estimators=200)``, max_features in {"sqrt", 0.5}.

Scores (over the datasets): mean accuracy, the Friedman rank (mean rank of each
method over datasets, 1 = best, ties averaged), P90 / P95 (share of datasets on
which a method reaches 90 % / 95 % of the best accuracy *among the methods
compared here*) and PMA (mean percentage of that maximum).  Times are
wall-clock seconds for the whole protocol (selection + 4 folds); the SVC-NTK
and SVC-NNGP times each include the full shared Gram computation.

Differences from Arora et al.
-----------------------------
They also tune the number of "fixed" (untrained) first layers of the NTK and
use networks without biases (beta = 0); we keep beta = 0.1 (the package
default) and tune depth and C only.  Their NTK is not divided by the input
dimension n0 (ours, in NTK parametrization, is), which for a fixed C grid
shifts the effective C by a factor n0.  Their Friedman ranks and P90/P95 are
over 180 classifiers; ours are over the 5 methods here.

How to run
----------
From the repository root::

    python benchmarks/bench_uci.py                 # all 90 datasets
    python benchmarks/bench_uci.py --quick         # 5 small datasets, a few minutes
    python benchmarks/bench_uci.py PATH --datasets iris wine --methods svc-ntk rf

The data path defaults to ``../shared/uci``.  Results go to
``benchmarks/results/uci.md`` (and ``.rst`` for the docs, ``.json`` for the
raw numbers; ``--quick`` writes ``uci_quick.*`` instead, ``--output STEM``
``STEM.*``), under the machine (CPU, SIMD level, BLAS, versions) and the exact
command; ``--from-json FILE`` re-renders the tables without running anything.
(The results were called ``uci_table.*`` before.)
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
from sklearn.utils.parallel import Parallel, delayed
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness  # noqa: E402  (also puts the checkout's sklearn_ntk on the path)
import _uci  # noqa: E402

import sklearn_ntk  # noqa: E402

DEPTHS = [1, 2, 3, 4, 5]
C_GRID = [10.0**k for k in range(-2, 5)]
T_GRID = [10.0**k for k in range(0, 7)] + [np.inf]
FINITE_T_GRID = [t for t in T_GRID if np.isfinite(t)]
RBF_GAMMAS = [0.01, 0.1, 1.0, 10.0]  # times 1 / n_features
RF_MAX_FEATURES = ["sqrt", 0.5]
RF_TREES = 200
KERNEL_PARAMS = dict(activation="relu", beta=0.1, weight_std=1.0)

QUICK = ["iris", "wine", "seeds", "glass", "breast-cancer-wisc-prog"]

METHODS = ["svc-ntk", "svc-nngp", "ntk-classifier", "ntk-logloss", "ntk-calibrated",
           "svc-rbf", "rf"]
LABELS = {"svc-ntk": "SVC-NTK", "svc-nngp": "SVC-NNGP",
          "ntk-classifier": "NTKClassifier", "ntk-logloss": "NTK log loss",
          "ntk-calibrated": "NTK calibrated", "svc-rbf": "SVC-RBF", "rf": "RF"}
#: The methods that give probabilities, scored by log loss and Brier score.
PROBABILISTIC = ["ntk-logloss", "ntk-calibrated"]


# --------------------------------------------------------------------------- protocol
def _first_best(scores):
    """Index of the first maximal score (ties go to the earliest grid point)."""
    return int(np.argmax(np.asarray(scores)))


@dataclass
class Outcome:
    """What one method gives on one dataset."""

    accuracy: float  # mean test accuracy over the four folds
    validation: float  # best accuracy on the selection split
    params: dict  # the selected hyperparameters
    svc_fits_capped: int = 0  # SVC fits stopped at SVC_MAX_ITER
    log_loss: float = np.nan  # mean test log loss over the folds (probabilistic)
    brier: float = np.nan  # mean test Brier score over the folds (probabilistic)


def _protocol(ds, evaluate, grid, n_jobs):
    """Choose ``grid``'s point on the validation split, score it on the 4 folds.

    ``evaluate(point, train, test)`` returns a test accuracy.  Returns the
    mean test accuracy, the best validation accuracy and the chosen point.
    """
    run = Parallel(n_jobs=n_jobs, prefer="threads")
    val = run(delayed(evaluate)(p, ds.train, ds.validation) for p in grid)
    best = grid[_first_best(val)]
    test = run(delayed(evaluate)(best, tr, te) for tr, te in ds.folds)
    return float(np.mean(test)), float(max(val)), best


#: libsvm's iteration cap.  Linear-like kernels (depth 1) with a large C on
#: non-separable data can need 10^8 iterations and more; fits stopped at the
#: cap (counted in the results) return libsvm's current, approximate solution.
SVC_MAX_ITER = 10**6


@dataclass
class CappedFits:
    """The C of every SVC fit of one method stopped at SVC_MAX_ITER.

    Shared by the threads of one method's protocol (``list.append`` is atomic).
    """

    values: list = field(default_factory=list)

    def __len__(self):
        return len(self.values)


def _svc_accuracy(K, y, C, train, test, capped):
    """Test accuracy of an SVC on a precomputed Gram matrix; counts a capped fit."""
    svc = SVC(kernel="precomputed", C=C, cache_size=1000, max_iter=SVC_MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svc.fit(K[np.ix_(train, train)], y[train])
    if np.max(svc.n_iter_) >= SVC_MAX_ITER:
        capped.values.append(C)
    return svc.score(K[np.ix_(test, train)], y[test])


class Context:
    """Per-dataset cache: the NTK/NNGP Gram matrices at every depth."""

    def __init__(self, ds, n_jobs):
        self.ds, self.n_jobs = ds, n_jobs
        self._grams, self.gram_seconds, self.gram_cpu = None, 0.0, 0.0

    def grams(self):
        if self._grams is None:
            start, cpu_start = time.perf_counter(), time.process_time()
            nngp, ntk = sklearn_ntk.kernels_by_depth(
                self.ds.X, depth=max(DEPTHS), n_jobs=self.n_jobs, **KERNEL_PARAMS)
            self._grams = {"ntk": ntk, "nngp": nngp}
            self.gram_seconds = time.perf_counter() - start
            self.gram_cpu = time.process_time() - cpu_start
        return self._grams


def run_svc_kernel(kind):
    def run(ds, ctx):
        grams = ctx.grams()[kind]
        grid = [(depth, C) for depth in DEPTHS for C in C_GRID]
        capped = CappedFits()

        def evaluate(point, train, test):
            depth, C = point
            return _svc_accuracy(grams[depth - 1], ds.y, C, train, test, capped)

        acc, val, (depth, C) = _protocol(ds, evaluate, grid, ctx.n_jobs)
        return Outcome(acc, val, {"depth": depth, "C": C}, len(capped))

    return run


def run_svc_rbf(ds, ctx):
    sq = euclidean_distances(ds.X, squared=True)
    grams = {}

    def gram(g):
        if g not in grams:
            grams[g] = np.exp(-(g / ds.n_features) * sq)
        return grams[g]

    for g in RBF_GAMMAS:
        gram(g)
    grid = [(g, C) for g in RBF_GAMMAS for C in C_GRID]
    capped = CappedFits()

    def evaluate(point, train, test):
        g, C = point
        return _svc_accuracy(gram(g), ds.y, C, train, test, capped)

    acc, val, (g, C) = _protocol(ds, evaluate, grid, ctx.n_jobs)
    return Outcome(acc, val, {"gamma": g / ds.n_features, "C": C}, len(capped))


def run_rf(ds, ctx):
    def evaluate(max_features, train, test):
        rf = RandomForestClassifier(n_estimators=RF_TREES, max_features=max_features,
                                    n_jobs=1, random_state=0)
        return rf.fit(ds.X[train], ds.y[train]).score(ds.X[test], ds.y[test])

    acc, val, best = _protocol(ds, evaluate, RF_MAX_FEATURES, ctx.n_jobs)
    return Outcome(acc, val, {"max_features": best})


def _select_ntk_classifier(ds, ctx):
    """(depth, t, validation accuracy) of the squared-loss NTKClassifier."""
    NTKClassifier = sklearn_ntk.NTKClassifier
    staged = hasattr(NTKClassifier, "staged_predict")
    with tempfile.TemporaryDirectory(prefix="bench_uci_") as cache:
        memory = None if staged else joblib.Memory(cache, verbose=0)

        def evaluate_depth(depth, train, test):
            """Accuracies at every t of T_GRID for one depth (one decomposition)."""
            clf = NTKClassifier(depth=depth, memory=memory, n_jobs=1, **KERNEL_PARAMS)
            if staged:
                # A finite t makes fit eigendecompose the kernel once; the
                # predictions at all times come from that decomposition.
                clf.set_params(t=1.0).fit(ds.X[train], ds.y[train])
                predictions = clf.staged_predict(ds.X[test], T_GRID)
                return [float(np.mean(p == ds.y[test])) for p in predictions]
            scores = []
            for t in T_GRID:
                clf.set_params(t=t).fit(ds.X[train], ds.y[train])
                scores.append(clf.score(ds.X[test], ds.y[test]))
            return scores

        run = Parallel(n_jobs=ctx.n_jobs, prefer="threads")
        val = run(delayed(evaluate_depth)(d, ds.train, ds.validation) for d in DEPTHS)
    flat = [(d, t) for d in DEPTHS for t in T_GRID]
    scores = [s for row in val for s in row]
    depth, t = flat[_first_best(scores)]
    return depth, t, float(max(scores))


def run_ntk_classifier(ds, ctx):
    NTKClassifier = sklearn_ntk.NTKClassifier
    depth, t, validation = _select_ntk_classifier(ds, ctx)

    def evaluate(train, test):
        clf = NTKClassifier(depth=depth, t=t, n_jobs=1, **KERNEL_PARAMS)
        return clf.fit(ds.X[train], ds.y[train]).score(ds.X[test], ds.y[test])

    run = Parallel(n_jobs=ctx.n_jobs, prefer="threads")
    test = run(delayed(evaluate)(tr, te) for tr, te in ds.folds)
    return Outcome(float(np.mean(test)), validation, {"depth": depth, "t": t})


def _probability_scores(classes, proba, y):
    """(accuracy, log loss, Brier score) of class probabilities on labels y.

    Labels of y missing from ``classes`` (absent from the training split)
    count as probability 0, clipped like sklearn.metrics.log_loss does.
    """
    onehot = (y[:, None] == classes[None]).astype(float)
    accuracy = float(np.mean(classes[np.argmax(proba, axis=1)] == y))
    eps = np.finfo(float).eps
    truth = np.sum(proba * onehot, axis=1)
    log_loss = float(-np.mean(np.log(np.clip(truth, eps, 1.0))))
    brier = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)
                          + (1.0 - onehot.sum(axis=1))))
    return accuracy, log_loss, brier


def _mean_scores(folds):
    accuracy, log_loss, brier = np.mean(np.array(folds, dtype=float), axis=0)
    return float(accuracy), float(log_loss), float(brier)


#: The log-loss classifier's integrator tolerance here: probabilities within
#: about 1e-4 of the exact flow (1 to 8 times tol measured), below what the
#: tables resolve, at about a third of the steps of the default 1e-7 (the
#: steps grow like tol^-1/4); t up to 1e6 takes thousands of steps.
LOG_LOSS_TOL = 1e-5


def run_ntk_logloss(ds, ctx):
    NTKClassifier = sklearn_ntk.NTKClassifier

    def evaluate_depth(depth, train, test):
        """Accuracies at every t of FINITE_T_GRID: one integration of the flow."""
        clf = NTKClassifier(depth=depth, t=1.0, loss="log_loss", tol=LOG_LOSS_TOL,
                            n_jobs=1, **KERNEL_PARAMS).fit(ds.X[train], ds.y[train])
        return [float(np.mean(p == ds.y[test]))
                for p in clf.staged_predict(ds.X[test], FINITE_T_GRID)]

    run = Parallel(n_jobs=ctx.n_jobs, prefer="threads")
    val = run(delayed(evaluate_depth)(d, ds.train, ds.validation) for d in DEPTHS)
    flat = [(d, t) for d in DEPTHS for t in FINITE_T_GRID]
    scores = [s for row in val for s in row]
    depth, t = flat[_first_best(scores)]

    def evaluate(train, test):
        clf = NTKClassifier(depth=depth, t=t, loss="log_loss", tol=LOG_LOSS_TOL,
                            n_jobs=1, **KERNEL_PARAMS).fit(ds.X[train], ds.y[train])
        return _probability_scores(clf.classes_, clf.predict_proba(ds.X[test]),
                                   ds.y[test])

    accuracy, log_loss, brier = _mean_scores(
        run(delayed(evaluate)(tr, te) for tr, te in ds.folds))
    return Outcome(accuracy, float(max(scores)), {"depth": depth, "t": t},
                   log_loss=log_loss, brier=brier)


def run_ntk_calibrated(ds, ctx):
    NTKClassifier = sklearn_ntk.NTKClassifier
    depth, t, validation = _select_ntk_classifier(ds, ctx)

    def evaluate(train, test):
        _, counts = np.unique(ds.y[train], return_counts=True)
        folds = min(3, int(counts.min()))
        if folds < 2:
            return np.nan, np.nan, np.nan
        clf = CalibratedClassifierCV(
            NTKClassifier(depth=depth, t=t, n_jobs=1, **KERNEL_PARAMS),
            method="sigmoid", cv=folds,
        ).fit(ds.X[train], ds.y[train])
        return _probability_scores(clf.classes_, clf.predict_proba(ds.X[test]),
                                   ds.y[test])

    run = Parallel(n_jobs=ctx.n_jobs, prefer="threads")
    accuracy, log_loss, brier = _mean_scores(
        run(delayed(evaluate)(tr, te) for tr, te in ds.folds))
    return Outcome(accuracy, validation, {"depth": depth, "t": t},
                   log_loss=log_loss, brier=brier)


RUNNERS = {
    "svc-ntk": run_svc_kernel("ntk"),
    "svc-nngp": run_svc_kernel("nngp"),
    "ntk-classifier": run_ntk_classifier,
    "ntk-logloss": run_ntk_logloss,
    "ntk-calibrated": run_ntk_calibrated,
    "svc-rbf": run_svc_rbf,
    "rf": run_rf,
}


def available(method):
    if method.startswith("ntk-") and not hasattr(sklearn_ntk, "NTKClassifier"):
        return False
    if method == "ntk-logloss" and \
            "tol" not in sklearn_ntk.NTKClassifier().get_params():
        return False
    return True


# --------------------------------------------------------------------------- output
def _fmt_param(key, value):
    if key in ("C", "t", "gamma"):
        if value == np.inf:
            return f"{key}=inf"
        return f"{key}={value:.0e}".replace("e+0", "e").replace("e-0", "e-")
    if key == "depth":
        return f"L={value}"
    return f"{key}={value}"


def _params(params):
    return ", ".join(_fmt_param(k, v) for k, v in params.items())


def _jsonable(value):
    if isinstance(value, float) and not np.isfinite(value):
        return "inf"
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _from_jsonable(value):
    return np.inf if value == "inf" else value


def render(record):
    """Markdown and reStructuredText reports of a results record."""
    methods = record["methods"]
    names = [row["dataset"] for row in record["datasets"]]
    acc = np.array([[row["results"][m]["accuracy"] for m in methods]
                    for row in record["datasets"]])
    scores = _uci.summary_scores(acc)
    seconds = {m: sum(row["results"][m]["seconds"] for row in record["datasets"])
               for m in methods}
    cpu = {m: sum(row["results"][m].get("cpu_seconds", np.nan)
                  for row in record["datasets"]) for m in methods}
    labels = [LABELS[m] for m in methods]

    summary_header = ["Method", "Mean accuracy (%)", "Friedman rank", "P90 (%)",
                      "P95 (%)", "PMA (%)", "Wall time (s)", "CPU time (s)"]
    summary_rows = []
    for j, m in enumerate(methods):
        summary_rows.append([
            LABELS[m],
            f"{100 * scores['mean'][j]:.2f} ± {100 * scores['std'][j]:.2f}",
            f"{scores['rank'][j]:.2f}",
            f"{100 * scores['p90'][j]:.1f}",
            f"{100 * scores['p95'][j]:.1f}",
            f"{100 * scores['pma'][j]:.2f}",
            f"{seconds[m]:.0f}",
            f"{cpu[m]:.0f}",
        ])
    detail_header = ["Dataset", "n", "d", "classes"] + labels + [
        f"{label} choice" for label in labels if label != "RF"]
    detail_rows = []
    for i, row in enumerate(record["datasets"]):
        best = acc[i].max()
        cells = []
        for j, m in enumerate(methods):
            text = f"{100 * acc[i, j]:.1f}"
            cells.append(f"**{text}**" if acc[i, j] == best else text)
        choices = [_params({k: _from_jsonable(v) for k, v in
                            row["results"][m]["params"].items()})
                   for m in methods if m != "rf"]
        detail_rows.append([row["dataset"], row["n"], row["d"], row["classes"]]
                           + cells + choices)

    meta = record["meta"]
    intro = [
        f"{len(names)} datasets ({meta['note']}); total wall time "
        f"{meta['wall_seconds']:.0f} s, CPU time {meta['cpu_seconds']:.0f} s.",
    ]
    if meta.get("skipped"):
        intro.append("Skipped (not available): " + ", ".join(meta["skipped"]) + ".")
    machine = "\n".join(_harness.environment_markdown(meta))
    paragraphs = [
        "Hyperparameters chosen on the `conxuntos.dat` train/validation split; "
        "accuracy is the mean over the four `conxuntos_kfold.dat` train/test pairs. "
        "Friedman rank: mean rank over datasets among the methods below (1 = best). "
        "P90 / P95: share of datasets where a method reaches 90 % / 95 % of the "
        "best accuracy among these methods; PMA: mean percentage of that maximum. "
        "Times are seconds for selection and the four folds, wall-clock and CPU "
        "(all threads of the process; on an idle machine the wall time is about the "
        "CPU time divided by the cores used); SVC-NTK and "
        "SVC-NNGP each include the shared Gram computation "
        f"({sum(row['gram_seconds'] for row in record['datasets']):.0f} s in total, "
        "both kernels at every depth in one pass).",
    ]

    capped = {m: sum(row["results"][m].get("svc_fits_capped", 0)
                     for row in record["datasets"]) for m in methods}
    if any(capped.values()):
        paragraphs[0] += (" SVC fits stopped at libsvm's iteration cap (10^6): " + ", ".join(
            f"{LABELS[m]} {capped[m]}" for m in methods if m.startswith("svc")) + ".")
    probability_header, probability_rows = _probability_table(record)
    md = ["# UCI benchmark (Arora et al., ICLR 2020 protocol)", "", machine,
          " ".join(intro), "", paragraphs[0], "", "## Summary", ""]
    md += [_harness.markdown_table(summary_header, summary_rows), ""]
    if probability_rows:
        md += ["## Probabilities", "", PROBABILITY_TEXT, ""]
        md += [_harness.markdown_table(probability_header, probability_rows), ""]
    md += ["## Per dataset", "", "Test accuracy (%) and the selected hyperparameters "
           "(L = depth); the best accuracy of each row is in bold.", ""]
    md += [_harness.markdown_table(detail_header, detail_rows), ""]

    rst = [machine.replace("`", "``"), " ".join(intro), "",
           paragraphs[0].replace("`", "``"), "", ".. rubric:: Summary", ""]
    rst += [_harness.rst_table(summary_header, summary_rows), ""]
    if probability_rows:
        rst += [".. rubric:: Probabilities", "", PROBABILITY_TEXT, ""]
        rst += [_harness.rst_table(probability_header, probability_rows), ""]
    rst += [".. rubric:: Per dataset", "",
            "Test accuracy (%) and the selected hyperparameters (L = depth); the "
            "best accuracy of each row is in bold.", ""]
    rst += [_harness.rst_table(detail_header, detail_rows), ""]
    return "\n".join(md), "\n".join(rst)


PROBABILITY_TEXT = (
    "Mean over the datasets of the test log loss and Brier score (each the "
    "mean over the four folds), over the datasets where both probabilistic "
    "methods have a score, and the number of datasets where each is the better "
    "(lower) of the two."
)


def _probability_table(record):
    """Log loss and Brier score of the probabilistic methods (header, rows)."""
    methods = [m for m in PROBABILISTIC if m in record["methods"]]
    if not methods:
        return None, []

    def values(key):
        return np.array([[_from_jsonable(row["results"][m].get(key, np.nan))
                          if row["results"][m].get(key) is not None else np.nan
                          for m in methods] for row in record["datasets"]], dtype=float)

    log_loss, brier = values("log_loss"), values("brier")
    scored = np.isfinite(log_loss).all(axis=1) & np.isfinite(brier).all(axis=1)
    header = ["Method", "Datasets scored", "Mean log loss", "Mean Brier score",
              "Best log loss on", "Best Brier on"]
    rows = []
    for j, m in enumerate(methods):
        others = np.delete(np.arange(len(methods)), j)
        best_log = np.sum(
            scored & (log_loss[:, j:j + 1] < log_loss[:, others]).all(axis=1))
        best_brier = np.sum(scored & (brier[:, j:j + 1] < brier[:, others]).all(axis=1))
        rows.append([LABELS[m], int(scored.sum()),
                     f"{np.mean(log_loss[scored, j]):.4f}",
                     f"{np.mean(brier[scored, j]):.4f}", int(best_log),
                     int(best_brier)])
    return header, rows


def write(record, stem):
    md, rst = render(record)
    print(md.split("## Per dataset")[0])
    _harness.write_results(stem, md, record, rst)


# --------------------------------------------------------------------------- main
def _default_root():
    for candidate in (Path("../shared/uci"), _harness.REPO.parent / "shared" / "uci"):
        if candidate.is_dir():
            return candidate
    return Path("../shared/uci")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", default=None,
                        help="data directory (default ../shared/uci)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only {', '.join(QUICK)}")
    parser.add_argument("--datasets", nargs="+", help="dataset names to run")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--n-jobs", type=int, default=2,
                        help="threads for the Gram matrices and the grid fits")
    parser.add_argument("--output", type=Path, default=None,
                        help="output stem (default benchmarks/results/uci"
                             "[_quick]); .md, .rst and .json are written")
    parser.add_argument("--note", default="machine shared with other jobs",
                        help="remark on the machine, printed in the table")
    parser.add_argument("--shard", default=None, metavar="I/K",
                        help="run only the I-th of K shards (0-based; datasets dealt "
                             "by decreasing size), e.g. to run K processes at once; "
                             "merge them with --from-json")
    parser.add_argument("--from-json", type=Path, nargs="+",
                        help="re-render (and merge) results files and exit")
    args = parser.parse_args(argv)

    if args.from_json:
        records = [json.loads(path.read_text()) for path in args.from_json]
        record = records[0]
        if len(records) > 1:
            merged = {}
            for r in records:  # a dataset run twice keeps its first result
                for row in r["datasets"]:
                    merged.setdefault(row["dataset"], row)
            record["datasets"] = [merged[name] for name in sorted(merged)]
            meta = record["meta"]
            meta["wall_seconds"] = max(r["meta"]["wall_seconds"] for r in records)
            meta["cpu_seconds"] = sum(r["meta"].get("cpu_seconds", 0) for r in records)
            loads = [float(v) for r in records for v in re.findall(
                r"load average ([0-9.]+) at start, ([0-9.]+) at end", r["meta"]["note"])[0]]
            meta["command"] = ("python benchmarks/bench_uci.py, split over "
                               f"{len(records)} processes run at the same time "
                               "(--shard I/K and --datasets subsets), merged with "
                               "--from-json")
            meta["note"] = (f"{args.note}; 1-min load average between "
                            f"{min(loads):.1f} and {max(loads):.1f}")
        stem = args.output or args.from_json[0].with_suffix("")
        write(record, stem)
        return

    root = Path(args.path) if args.path else _default_root()
    names = _uci.list_datasets(root)
    if args.datasets:
        unknown = sorted(set(args.datasets) - set(names))
        if unknown:
            parser.error(f"unknown datasets: {', '.join(unknown)}")
        names = [n for n in names if n in args.datasets]
    elif args.quick:
        names = [n for n in names if n in QUICK]
    if args.shard:
        index, count = (int(v) for v in args.shard.split("/"))
        sizes = {n: int(_uci._metadata(Path(root) / n)["n_patrons1"]) for n in names}
        by_size = sorted(names, key=lambda n: (-sizes[n], n))
        names = sorted(by_size[index::count])
    methods = [m for m in args.methods if available(m)]
    skipped = [LABELS[m] for m in args.methods if m not in methods]
    for label in skipped:
        print(f"Skipping {label}: not in this version of sklearn_ntk.")

    environment = _harness.print_header()

    def make_record():
        meta = _harness.run_metadata(
            environment, argv,
            note=f"{args.note}; 1-min load average {load_start:.1f} at start, "
                 f"{os.getloadavg()[0]:.1f} at end",
            wall_seconds=time.perf_counter() - start_all,
            cpu_seconds=time.process_time() - cpu_all, skipped=skipped,
            grids={"depth": DEPTHS, "C": C_GRID, "t": [_jsonable(t) for t in T_GRID],
                   "rbf_gamma_times_d": RBF_GAMMAS,
                   "rf_max_features": RF_MAX_FEATURES, "rf_trees": RF_TREES})
        return {"meta": meta, "methods": methods, "datasets": rows}

    stem = args.output or _harness.RESULTS / ("uci_quick" if args.quick else "uci")
    if args.shard and not args.output:
        stem = stem.with_name(stem.name + f"_shard{args.shard.replace('/', 'of')}")
    partial = stem.with_suffix(".partial.json")
    start_all, cpu_all = time.perf_counter(), time.process_time()
    load_start = os.getloadavg()[0]
    rows = []
    # Parallelism comes from n_jobs threads over grid points and Gram tiles;
    # multi-threaded BLAS on top of them oversubscribes the cores (its idle
    # threads spin), so BLAS runs single-threaded.
    blas = threadpool_limits(limits=1, user_api="blas")
    for index, name in enumerate(names, 1):
        ds = _uci.load_dataset(root, name)
        ctx = Context(ds, args.n_jobs)
        results = {}
        if {"svc-ntk", "svc-nngp"} & set(methods):
            ctx.grams()
        for m in methods:
            start, cpu_start = time.perf_counter(), time.process_time()
            outcome = RUNNERS[m](ds, ctx)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            if m in ("svc-ntk", "svc-nngp"):
                # The shared Gram time is charged to both SVC-NTK and SVC-NNGP.
                seconds += ctx.gram_seconds
                cpu += ctx.gram_cpu
            results[m] = {"accuracy": outcome.accuracy, "validation": outcome.validation,
                          "seconds": seconds, "cpu_seconds": cpu,
                          "svc_fits_capped": outcome.svc_fits_capped,
                          "log_loss": _jsonable(outcome.log_loss),
                          "brier": _jsonable(outcome.brier),
                          "params": {k: _jsonable(v) for k, v in outcome.params.items()}}
        rows.append({"dataset": name, "n": ds.n_samples, "d": ds.n_features,
                     "classes": ds.n_classes, "gram_seconds": ctx.gram_seconds,
                     "results": results})
        line = "  ".join(f"{LABELS[m]} {100 * results[m]['accuracy']:5.1f}"
                         f" ({results[m]['seconds']:.1f}s)" for m in methods)
        print(f"[{index:2d}/{len(names)}] {name:32s} n={ds.n_samples:5d}  {line}",
              flush=True)
        del ctx
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(make_record(), indent=1))
    blas.restore_original_limits()

    write(make_record(), stem)
    partial.unlink()


if __name__ == "__main__":
    main()
