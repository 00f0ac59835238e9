"""Tests of ``python -m sklearn_ntk``."""

import re
import subprocess
import sys

import numpy as np
import pytest

from sklearn_ntk.__main__ import paired_difference, verdict, main


def test_main_prints_nested_scores_and_a_verdict_consistent_with_them(capsys):
    results, verdicts = main(["--folds", "3", "--samples", "300"])
    out = capsys.readouterr().out
    assert set(results) == {"NTKClassifier", "SVC (RBF)", "SVC (NTK)"}
    for name, result in results.items():
        scores = result["test_score"]
        assert scores.shape == (3,)
        # Each outer fold tuned its own model on its training part only.
        assert len(result["estimator"]) == 3
        printed = re.search(rf"^{re.escape(name)} +[\d.]+ +\(folds ([\d. ]+);", out,
                            flags=re.MULTILINE).group(1)
        np.testing.assert_allclose([float(s) for s in printed.split()], scores,
                                   atol=5e-5)
    assert {search.best_params_["ntkclassifier__depth"]
            for search in results["NTKClassifier"]["estimator"]} <= {1, 2, 3, 4}
    for name, (outcome, line) in verdicts.items():
        assert line in out
        # The printed verdict is the one the printed scores give.
        expected = verdict(name, results[name]["test_score"], "SVC (RBF)",
                           results["SVC (RBF)"]["test_score"], test_fraction=1 / 3)
        assert (outcome, line) == expected
    # Infinitely wide networks are a reasonable model of these digits.
    assert results["NTKClassifier"]["test_score"].mean() > 0.9
    assert "total" in out


def test_paired_difference_uses_the_corrected_standard_error():
    # Differences 0.01, 0.03 (mean 0.02, sample variance 2e-4) over k = 2
    # folds of half the data: the variance of the mean is 2e-4 (1/2 + 1).
    mean, standard_error = paired_difference([0.91, 0.93], [0.90, 0.90], 0.5)
    assert mean == pytest.approx(0.02)
    assert standard_error == pytest.approx(np.sqrt(2e-4 * 1.5))
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([0.9], [0.8], 0.5)


@pytest.mark.parametrize(
    "scores, baseline, expected",
    [
        # Every fold 0.05 better: no spread, so any mean beyond 0 is real.
        ([0.95, 0.95, 0.95], [0.90, 0.90, 0.90], "better"),
        ([0.90, 0.90, 0.90], [0.95, 0.95, 0.95], "worse"),
        # Identical scores.
        ([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], "indistinguishable"),
        # Mean +0.01 with differences ±0.05 around it: well within the margin.
        ([0.96, 0.86, 0.91], [0.90, 0.90, 0.90], "indistinguishable"),
        # Large consistent gain with a little spread.
        ([0.95, 0.96, 0.97], [0.90, 0.90, 0.90], "better"),
    ],
)
def test_verdict_on_constructed_scores(scores, baseline, expected):
    outcome, line = verdict("A", scores, "B", baseline, test_fraction=1 / 3)
    assert outcome == expected
    assert line.startswith(f"verdict: A {expected} ")
    mean, standard_error = paired_difference(scores, baseline, 1 / 3)
    assert f"{mean:+.4f}" in line and f"±{2 * standard_error:.4f}" in line
    # The outcome flips exactly where |mean| crosses the margin.
    if standard_error > 0:
        factor = abs(mean) / standard_error
        assert verdict("A", scores, "B", baseline, 1 / 3,
                       n_standard_errors=factor * 1.01)[0] == "indistinguishable"
        if mean != 0:
            assert verdict("A", scores, "B", baseline, 1 / 3,
                           n_standard_errors=factor * 0.99)[0] != "indistinguishable"


def test_module_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_ntk", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "Nested cross-validation" in result.stdout
