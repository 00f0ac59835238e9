"""Figures quoted in the text of docs/benchmarks.rst, computed at build time.

The text of the benchmarks page compares methods on the 90 UCI datasets.  So
that it always agrees with the tables it sits above, its counts and p-values
are computed here from the results file the tables come from
(``benchmarks/results/uci.json``) and reach the page as reST substitutions
(``|uci_ntk_vs_rf|`` and so on, see ``rst_epilog`` in conf.py).
"""

import json
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

#: Accuracies closer than this are a tie.  Each accuracy is a mean over four
#: test folds, so two methods with the same predictions can differ by the
#: rounding of that mean (1e-16); one test sample is at least 2e-4 (the
#: largest test fold has under 5000 samples).
TIE_TOLERANCE = 1e-9

NAMES = {"svc-ntk": "SVC-NTK", "svc-nngp": "SVC-NNGP", "svc-rbf": "SVC-RBF",
         "ntk-classifier": "NTKClassifier", "rf": "RF"}


def _comparison(accuracy, method, other):
    difference = accuracy[method] - accuracy[other]
    difference[np.abs(difference) <= TIE_TOLERANCE] = 0.0
    wins = int(np.sum(difference > 0))
    ties = int(np.sum(difference == 0))
    losses = int(np.sum(difference < 0))
    # zero_method="wilcox" drops the ties, as the usual signed-rank test does.
    p_value = wilcoxon(difference, zero_method="wilcox").pvalue
    return f"{wins} / {ties} / {losses} (Wilcoxon signed-rank p = {p_value:.2g})"


def substitutions(results_file):
    """reST substitution definitions for the figures of the UCI benchmark."""
    results = json.loads(Path(results_file).read_text(encoding="utf-8"))
    datasets = results["datasets"]
    accuracy = {
        method: np.array([d["results"][method]["accuracy"] for d in datasets])
        for method in results["methods"]
    }
    depths = Counter(d["results"]["svc-ntk"]["params"]["depth"]
                     for d in datasets)
    finite_t = sum(d["results"]["ntk-classifier"]["params"]["t"]
                   not in ("inf", float("inf")) for d in datasets)
    grids = results["meta"]["grids"]
    kernel_fits = len(grids["depth"]) * len(grids["C"]) + 4
    rbf_fits = len(grids["rbf_gamma_times_d"]) * len(grids["C"]) + 4
    values = {
        "uci_datasets": str(len(datasets)),
        "uci_tie_tolerance": f"{TIE_TOLERANCE:g}",
        "uci_ntk_vs_rf": _comparison(accuracy, "svc-ntk", "rf"),
        "uci_ntk_vs_rbf": _comparison(accuracy, "svc-ntk", "svc-rbf"),
        "uci_ntk_vs_nngp": _comparison(accuracy, "svc-ntk", "svc-nngp"),
        "uci_classifier_vs_rbf": _comparison(accuracy, "ntk-classifier",
                                             "svc-rbf"),
        "uci_classifier_vs_rf": _comparison(accuracy, "ntk-classifier", "rf"),
        "uci_ntk_depths": ", ".join(
            f"{depths[depth]}" for depth in sorted(grids["depth"])),
        "uci_finite_t": str(finite_t),
        "uci_kernel_fits": f"{len(datasets)} × {kernel_fits} = "
                           f"{len(datasets) * kernel_fits:,}",
        "uci_rbf_fits": f"{len(datasets)} × {rbf_fits} = "
                        f"{len(datasets) * rbf_fits:,}",
    }
    for method, name in NAMES.items():
        values[f"uci_mean_{name}"] = f"{100 * accuracy[method].mean():.2f} %"
    return "\n".join(f".. |{name}| replace:: {value}"
                     for name, value in values.items())
