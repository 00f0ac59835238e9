"""``python -m sklearn_ntk``: an infinitely wide network against an RBF SVM.

A fair comparison by nested cross-validation on scikit-learn's bundled
handwritten digits: in each outer fold, GridSearchCV tunes every model on the
outer training part only (inner folds), and the tuned model is scored once on
the outer test part, which no choice has seen.  The models are
:class:`~sklearn_ntk.NTKClassifier` (depth and training time t, the kernel
and its decomposition cached per fold with ``memory``), an SVC with the RBF
kernel (C and gamma) and an SVC with the NTK as its kernel (depth and C).
The verdict compares each network with the RBF SVC through the paired
differences of their outer-fold accuracies.
"""

import argparse
import sys
import tempfile
import time
from collections import Counter

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from ._estimators import NTKClassifier
from ._kernels import NTK

#: Images used: the first 1000 of the 1797 (about 100 per digit) keep the
#: whole job under a minute on two cores; the networks choose depth >= 2
#: here, so the comparison is between nonlinear models.
N_SAMPLES = 1000
#: Inner folds of each GridSearchCV.
INNER_FOLDS = 3
#: The verdict calls a difference real when its mean exceeds this many
#: standard errors (about a 95% two-sided interval).
N_STANDARD_ERRORS = 2.0

#: Grids, each 16 or 12 points: depths and training times (np.inf =
#: converged) of the network, C and gamma of the RBF SVC (gamma around
#: 1 / n_features for standardised pixels), depth and C of the NTK SVC.
NTK_GRID = {
    "ntkclassifier__depth": [1, 2, 3, 4],
    "ntkclassifier__t": [1e2, 1e3, 1e4, np.inf],
}
RBF_GRID = {"svc__C": [1.0, 10.0, 100.0], "svc__gamma": [1e-3, 3e-3, 1e-2, 3e-2]}
NTK_SVC_GRID = {"svc__kernel__depth": [1, 2, 3, 4], "svc__C": [1.0, 10.0, 100.0]}


def paired_difference(scores, baseline_scores, test_fraction):
    """Mean and standard error of the paired differences of outer-fold scores.

    The standard error is Nadeau & Bengio's (2003) corrected one: the outer
    training sets overlap, so the fold differences are positively
    correlated, and the naive var/k understates the variance of their mean;
    the correction uses var · (1/k + n_test/n_train).

    Parameters
    ----------
    scores, baseline_scores : array-like of shape (n_folds,)
        Scores of the two models on the same outer folds.
    test_fraction : float
        Fraction of the samples in each outer test fold (1 / n_folds).

    Returns
    -------
    mean, standard_error : float
    """
    differences = np.asarray(scores, dtype=float) - np.asarray(baseline_scores, dtype=float)
    k = differences.size
    if k < 2:
        raise ValueError(f"Need at least 2 paired scores, got {k}.")
    correction = 1.0 / k + test_fraction / (1.0 - test_fraction)
    return differences.mean(), np.sqrt(correction * differences.var(ddof=1))


def verdict(name, scores, baseline_name, baseline_scores, test_fraction,
            n_standard_errors=N_STANDARD_ERRORS):
    """One line saying whether ``name`` scored better, worse or the same.

    "better" or "worse" when the mean paired difference is more than
    ``n_standard_errors`` standard errors (:func:`paired_difference`) from
    0, "indistinguishable" otherwise.

    Returns
    -------
    outcome : {"better", "worse", "indistinguishable"}
    line : str
    """
    mean, standard_error = paired_difference(scores, baseline_scores, test_fraction)
    margin = n_standard_errors * standard_error
    if abs(mean) <= margin:
        outcome, relation = "indistinguishable", "within"
    else:
        outcome, relation = ("better" if mean > 0 else "worse"), "beyond"
    line = (
        f"verdict: {name} {outcome} "
        f"{'from' if outcome == 'indistinguishable' else 'than'} {baseline_name}: "
        f"mean accuracy difference {mean:+.4f} over {len(scores)} outer folds, "
        f"{relation} {n_standard_errors:g} standard errors (±{margin:.4f})"
    )
    return outcome, line


def _chosen(search_results):
    """The hyperparameters chosen in each outer fold, most frequent first."""
    counts = Counter(
        ", ".join(
            f"{name.split('__')[-1]}={value:g}" for name, value in search.best_params_.items()
        )
        for search in search_results
    )
    return "; ".join(f"{params} ({count}×)" for params, count in counts.most_common())


def main(argv=None):
    """Run the comparison; return {model name: outer-fold results} and the verdicts."""
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_ntk",
        description="Nested cross-validation on scikit-learn's digits: "
        "NTKClassifier (GridSearchCV over depth and t) and an SVC with the NTK "
        "kernel against an SVC with the RBF kernel, each tuned on the outer "
        "training folds only.",
    )
    parser.add_argument("--folds", type=int, default=5, help="outer folds (default 5)")
    parser.add_argument("--samples", type=int, default=N_SAMPLES,
                        help=f"digits images used (default {N_SAMPLES} of 1797)")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="joblib workers over the outer folds")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X, y = X[:args.samples], y[:args.samples]
    outer = StratifiedKFold(args.folds, shuffle=True, random_state=0)
    inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=1)
    print(f"digits: {X.shape[0]} images, {X.shape[1]} pixels, "
          f"{np.unique(y).size} classes; accuracy on {args.folds} outer folds, "
          f"each model tuned by {INNER_FOLDS}-fold GridSearchCV on the outer "
          "training part")

    results = {}
    start = time.perf_counter()
    # Matrices of a few hundred rows: threaded BLAS gains nothing and, on a
    # busy machine, its spinning threads cost several times the work itself.
    with threadpool_limits(limits=1, user_api="blas"), \
            tempfile.TemporaryDirectory() as cache:
        models = {
            "NTKClassifier": (make_pipeline(
                StandardScaler(), NTKClassifier(alpha=1e-6, memory=cache)), NTK_GRID),
            "SVC (RBF)": (make_pipeline(StandardScaler(), SVC()), RBF_GRID),
            "SVC (NTK)": (make_pipeline(StandardScaler(), SVC(kernel=NTK())),
                          NTK_SVC_GRID),
        }
        for name, (pipeline, grid) in models.items():
            began = time.perf_counter()
            search = GridSearchCV(pipeline, grid, cv=inner)
            results[name] = cross_validate(
                search, X, y, cv=outer, n_jobs=args.n_jobs, return_estimator=True
            )
            results[name]["seconds"] = time.perf_counter() - began

    for name, result in results.items():
        scores = result["test_score"]
        folds = " ".join(f"{score:.4f}" for score in scores)
        print(f"{name:13s} {scores.mean():.4f}  (folds {folds}; "
              f"{result['seconds']:.1f} s)  chose {_chosen(result['estimator'])}")
    verdicts = {}
    for name in ["NTKClassifier", "SVC (NTK)"]:
        verdicts[name] = verdict(
            name, results[name]["test_score"], "SVC (RBF)",
            results["SVC (RBF)"]["test_score"], test_fraction=1.0 / args.folds,
        )
        print(verdicts[name][1])
    print(f"total {time.perf_counter() - start:.1f} s")
    return results, verdicts


if __name__ == "__main__":
    main(sys.argv[1:])
