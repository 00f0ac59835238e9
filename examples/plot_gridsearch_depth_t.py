"""
Choosing depth and training time with GridSearchCV
==================================================

An infinitely wide network has no weights to fit, but it still has
hyperparameters: the ``depth`` of the network and the training time ``t``
(early stopping).  :class:`sklearn_ntk.NTKRegressor` is an ordinary
scikit-learn regressor, so :class:`~sklearn.model_selection.GridSearchCV`
chooses them like any other hyperparameters.

With ``memory`` (a :class:`joblib.Memory`, as in
:class:`~sklearn.pipeline.Pipeline`), fits that differ only in ``t`` reuse
each fold's kernel and eigendecomposition: the search costs one
decomposition per fold and depth, not one per grid point.

The data is scikit-learn's diabetes regression problem (442 patients, 10
features).  The reduced size (default, used in CI) searches depths 1–5; set
``SKLEARN_NTK_EXAMPLES_FULL=1`` for depths 1–8 and a finer t grid.
"""

# %%
# The search
# ----------
import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from joblib import Memory
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_diabetes
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.preprocessing import StandardScaler

from sklearn_ntk import NTKRegressor

FULL = os.environ.get("SKLEARN_NTK_EXAMPLES_FULL", "") not in ("", "0")
OUTPUT = Path(os.environ.get(
    "SKLEARN_NTK_EXAMPLES_OUTPUT",
    Path(globals().get("__file__", "examples/x.py")).resolve().parent / "_output",
))
OUTPUT.mkdir(parents=True, exist_ok=True)

X, y = load_diabetes(return_X_y=True)
X = StandardScaler().fit_transform(X)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

depths = list(range(1, 9)) if FULL else [1, 2, 3, 4, 5]
times = list(np.logspace(0, 6, 13 if FULL else 7)) + [np.inf]

cache = tempfile.mkdtemp(prefix="sklearn_ntk_example_")
search = GridSearchCV(
    # The network regresses standardised targets (its output starts at 0).
    TransformedTargetRegressor(
        regressor=NTKRegressor(memory=Memory(cache, verbose=0)),
        transformer=StandardScaler(),
    ),
    {"regressor__depth": depths, "regressor__t": times},
    cv=3,
)
start = time.perf_counter()
search.fit(X_train, y_train)
print(f"{len(depths) * len(times)} grid points x 3 folds in "
      f"{time.perf_counter() - start:.1f} s")
best = search.best_params_
print(f"best depth {best['regressor__depth']}, best t {best['regressor__t']:g}; "
      f"CV R² {search.best_score_:.3f}, test R² {search.score(X_test, y_test):.3f}")

# %%
# Cross-validated R² over depth and t
# -----------------------------------
# Small t under-fits (the network has barely moved from its zero mean);
# t = ∞ interpolates the noisy training targets.  The best time is finite:
# gradient flow fits the large-eigenvalue directions of the kernel first,
# so stopping early acts like a spectral regulariser.
scores = search.cv_results_["mean_test_score"].reshape(len(depths), len(times))
labels = [f"{t:.0e}" if np.isfinite(t) else "∞" for t in times]

fig, (ax_map, ax_curve) = plt.subplots(1, 2, figsize=(11, 4))
image = ax_map.imshow(np.clip(scores, 0, None), aspect="auto", cmap="viridis",
                      origin="lower")
ax_map.set_xticks(range(len(times)), labels, rotation=45)
ax_map.set_yticks(range(len(depths)), depths)
ax_map.set_xlabel("training time t")
ax_map.set_ylabel("depth")
ax_map.set_title("mean CV R² (clipped at 0)")
fig.colorbar(image, ax=ax_map)

finite = np.isfinite(times)
for i, depth in enumerate(depths):
    ax_curve.semilogx(np.array(times)[finite], scores[i, finite], marker="o",
                      label=f"depth {depth}")
ax_curve.axhline(0, color="grey", lw=0.5)
ax_curve.set_ylim(max(scores.min(), -0.5), scores.max() + 0.05)
ax_curve.set_xlabel("training time t")
ax_curve.set_ylabel("mean CV R²")
ax_curve.set_title("early stopping: R² against t")
ax_curve.legend(fontsize="small")
fig.tight_layout()
fig.savefig(OUTPUT / "gridsearch_depth_t.png", dpi=100)
plt.show()
