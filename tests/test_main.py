"""Tests of ``python -m sklearn_ntk``."""

import subprocess
import sys

from sklearn_ntk.__main__ import main


def test_main_reports_both_searches(capsys):
    ntk_search, rbf_search = main(["--folds", "3"])
    out = capsys.readouterr().out
    assert "NTKRegressor    best depth=" in out and "RBF KernelRidge best alpha=" in out
    assert "total" in out
    assert set(ntk_search.best_params_) == {"ntkregressor__depth", "ntkregressor__t"}
    # An infinitely wide network is a reasonable model of this data.
    assert ntk_search.best_score_ > 0.4
    assert abs(ntk_search.best_score_ - rbf_search.best_score_) < 0.1


def test_module_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_ntk", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "GridSearchCV over depth and t" in result.stdout
