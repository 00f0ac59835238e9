"""Run the gallery examples in their reduced size and check their figures."""

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("plot_*.py"))
# Under a second each; the others take 2-10 s (more on a loaded machine) and
# are marked slow, so that `pytest -m "not slow"` still runs two examples.
FAST_EXAMPLES = {"plot_kernels_in_svr_gpr", "plot_uncertainty"}


def test_examples_are_found():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize(
    "script",
    [pytest.param(path, marks=() if path.stem in FAST_EXAMPLES else pytest.mark.slow)
     for path in EXAMPLES],
    ids=lambda path: path.stem,
)
def test_example_runs_and_saves_its_figure(script, tmp_path, monkeypatch):
    import runpy

    import matplotlib.pyplot as plt

    monkeypatch.delenv("SKLEARN_NTK_EXAMPLES_FULL", raising=False)  # reduced size
    monkeypatch.setenv("SKLEARN_NTK_EXAMPLES_OUTPUT", str(tmp_path))
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        plt.close("all")
    figures = list(tmp_path.glob("*.png"))
    assert figures, f"{script.name} saved no PNG figure"
    assert all(figure.stat().st_size > 10_000 for figure in figures)
    # Sphinx-gallery needs a reST title as the first lines of the docstring.
    lines = script.read_text(encoding="utf-8").lstrip().splitlines()
    assert lines[0] == '"""' and set(lines[2]) == {"="}
    assert len(lines[2]) >= len(lines[1])
