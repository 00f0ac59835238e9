"""Run the gallery examples in their reduced size and check their claims.

Each example states what it shows and prints the numbers that support it;
``CLAIMS`` below asserts, for each example, the same statement on the
variables the example computed, so that the text of the gallery cannot drift
away from what its code produces.  A new example needs an entry here.
"""

import ast
import re
import runpy
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.rglob("plot_*.py"))
# About 5 s or less each on an idle two-core machine; the others take up to
# 20 s and are marked slow, so that `pytest -m "not slow"` still runs some.
FAST_EXAMPLES = {"plot_first_steps", "plot_kernels_in_svr_gpr",
                 "plot_uncertainty"}


def _first_steps(ns):
    # t = inf is KernelRidge with the same kernel and alpha: both solve the
    # same 40 x 40 system by Cholesky, to rounding (1e-10 is 1e5 eps times
    # predictions of order 1, far above the system's rounding here).
    assert ns["difference"] < 1e-10
    # Training longer fits the training data more closely.
    assert np.all(np.diff(ns["train_mse"]) < 0)
    assert ns["train_mse"][-1] < 1e-6  # t = inf interpolates (alpha=1e-10)


def _kernels_in_svr_gpr(ns):
    for name, gpr in ns["gprs"].items():
        start = gpr.kernel.get_params()
        fitted = gpr.kernel_.get_params()
        for key in ("k1__beta", "k1__weight_std", "k2__noise_level"):
            # "moved away from its starting value": by more than 1 %.
            assert abs(fitted[key] / start[key] - 1) > 0.01, (name, key)
        assert (gpr.log_marginal_likelihood_value_
                > gpr.log_marginal_likelihood(gpr.kernel.theta) + 1), name
    ntk, nngp = (ns["gprs"][name].log_marginal_likelihood_value_
                 for name in ("NTK", "NNGP"))
    assert abs(ntk - nngp) < 5  # "within a few units of each other"


def _gridsearch_depth_t(ns):
    search, scores, finite = ns["search"], ns["scores"], ns["finite"]
    assert np.isfinite(search.best_params_["regressor__t"])
    assert scores[:, finite].max() > scores[:, ~finite].max()
    # The gap between CV and test R² is of the same size for the ridge
    # baseline on the same split: within 0.1 of each other.
    ntk_gap = search.best_score_ - search.score(ns["X_test"], ns["y_test"])
    ridge_gap = ns["ridge_cv"] - ns["ridge"].score(ns["X_test"], ns["y_test"])
    assert ntk_gap > 0 and ridge_gap > 0
    assert abs(ntk_gap - ridge_gap) < 0.1
    # "about as accurate as a tuned linear ridge regression": within 0.05.
    assert abs(search.best_score_ - ns["ridge_cv"]) < 0.05


def _uncertainty(ns):
    # The same GP posterior computed two ways: rounding of a 50 x 50
    # Cholesky solve, far below 1e-10.
    assert ns["mean_diff"] < 1e-10 and ns["std_diff"] < 1e-10
    on_data, in_gap, beyond = ns["on_data"], ns["in_gap"], ns["beyond"]
    for std in (ns["std_nngp"], ns["std_ntk"]):
        assert std[on_data].mean() < std[in_gap].mean() < std[beyond].mean()
    stds = ns["stds"]
    np.testing.assert_allclose(stds[0] / stds[0], 1.0)
    for std in stds[1:]:  # shrinks on the data first
        ratio = std / stds[0]
        assert ratio[on_data].mean() < ratio[in_gap].mean()


def _ntk_classifier(ns):
    assert ns["difference"] < 1e-10  # the same kernel ridge solve
    accuracies = [search.score(ns["X_test"], ns["y_test"])
                  for search in (ns["ntk_search"], ns["svc_search"])]
    # "similar test accuracies": within 4 of the 75 test points.
    assert abs(accuracies[0] - accuracies[1]) <= 4 / 75 + 1e-12


def _random_features_large_data(ns):
    nystroem, sampler = ns["scores"]["Nystroem(NTK)"], ns["scores"]["NTKSampler"]
    assert np.all(np.diff(nystroem) > 0) and np.all(np.diff(sampler) > 0)
    assert np.all(np.array(nystroem) > np.array(sampler))
    assert nystroem[-1] > ns["exact_r2"]


def _figure1(ns):
    narrow, wide = (ns["summary"][width] for width in ns["WIDTHS"])
    assert wide["distance"] < narrow["distance"]
    assert 1 < wide["inflation"] < narrow["inflation"]


def _figure2(ns):
    # The page says the reduced run does not resolve the widths, and that
    # its networks are consistent with the limit (within 3 standard errors
    # of the limit's 80 % and of a distance ratio of 1).
    assert not ns["resolved"]
    for width in ns["WIDTHS"]:
        distances = ns["distances"][width]
        error = distances.std(ddof=1) / np.sqrt(len(distances))
        assert abs(distances.mean() - 1) < 3 * error + 0.1


def _figure3(ns):
    paths, theory, widths = ns["paths"], ns["theory"], ns["WIDTHS"]
    gaps = [np.abs(paths[width, 0]["g"] - theory).max() for width in widths]
    deviations = [paths[width, 0]["h"].max() for width in widths]
    assert np.all(np.diff(gaps) < 0) and np.all(np.diff(deviations) < 0)
    assert ns["val_mse"][ns["best"]] < ns["val_mse"][-1]
    assert np.isfinite(ns["times"][ns["best"]])


def _log_loss_classifier(ns):
    losses, best = ns["test_log_loss"], ns["best"]
    # "falls, then rises": the minimum is inside the grid of times.
    assert 0 < best < len(losses) - 1
    assert losses[best] < losses[0] and losses[best] < losses[-1]
    # Uniform probabilities at t = 0 cost log 2; the first time is close.
    assert abs(losses[0] - np.log(2)) < 0.05
    # "within a few test points": 1000 test points, 2 percentage points.
    assert abs(ns["log_loss_accuracy"].max()
               - ns["squared_accuracy"].max()) < 0.02


CLAIMS = {
    "plot_first_steps": _first_steps,
    "plot_kernels_in_svr_gpr": _kernels_in_svr_gpr,
    "plot_gridsearch_depth_t": _gridsearch_depth_t,
    "plot_uncertainty": _uncertainty,
    "plot_ntk_classifier": _ntk_classifier,
    "plot_log_loss_classifier": _log_loss_classifier,
    "plot_random_features_large_data": _random_features_large_data,
    "plot_figure1_ntk_at_initialisation_and_after_training": _figure1,
    "plot_figure2_trained_networks_against_the_limiting_gaussian": _figure2,
    "plot_figure3_convergence_along_kernel_principal_components": _figure3,
}


def test_examples_are_found():
    assert len(EXAMPLES) >= len(CLAIMS)
    assert (EXAMPLES_DIR / "README.txt").is_file()
    assert (EXAMPLES_DIR / "jacot2018" / "README.txt").is_file()


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.stem)
def test_example_reads_like_a_downloaded_script(script):
    text = script.read_text(encoding="utf-8")
    lines = text.splitlines()
    # Sphinx-gallery needs a reST title as the first lines of the docstring.
    assert lines[0] == '"""' and set(lines[2]) == {"="}
    assert len(lines[2]) >= len(lines[1])
    # Downloaded, it shows its figures and writes no files.
    assert "matplotlib.use" not in text and "savefig" not in text
    assert lines[-1] == "plt.show()"
    # Code and text fit an 80-character column on the rendered page.
    assert max(len(line) for line in lines) <= 80
    # Backslashes of the maths in the docstring must reach reST intact.
    docstring = ast.get_docstring(ast.parse(text))
    assert not any(ord(c) < 32 and c not in "\n" for c in docstring)


@pytest.mark.parametrize(
    "script",
    [pytest.param(path, marks=() if path.stem in FAST_EXAMPLES else pytest.mark.slow)
     for path in EXAMPLES],
    ids=lambda path: path.stem,
)
def test_example_runs_and_its_claim_holds(script, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert script.stem in CLAIMS, f"add the claim of {script.name} to CLAIMS"
    monkeypatch.delenv("SKLEARN_NTK_EXAMPLES_FULL", raising=False)  # reduced
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.extend(plt.get_fignums()))
    plt.close("all")
    try:
        namespace = runpy.run_path(str(script), run_name="__main__")
    finally:
        plt.close("all")
    assert shown, f"{script.name} showed no figure"
    CLAIMS[script.stem](namespace)


@pytest.mark.slow
def test_getting_started_code_runs(tmp_path, monkeypatch):
    # The literal blocks of the getting-started page, in order, as a reader
    # would paste them: every name they use is defined on the page.
    page = EXAMPLES_DIR.parent / "docs" / "getting_started.rst"
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", page.read_text("utf-8"))
    code = [textwrap.dedent(block) for block in blocks]
    code = [block for block in code if not block.lstrip().startswith("pip ")]
    assert len(code) >= 3
    monkeypatch.chdir(tmp_path)  # the page's memory="cache_dir"
    namespace = {}
    for block in code:
        exec(compile(block, str(page), "exec"), namespace)
    assert namespace["std"].shape == namespace["X_test"].shape[:1]
