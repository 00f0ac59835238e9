"""
Classification trained on the cross-entropy: probabilities along t
==================================================================

Networks are trained for classification with the cross-entropy, not the
squared error.  In the infinite-width limit training still follows kernel
gradient descent with the Neural Tangent Kernel, for any cost (Jacot et al.
2018); with the cross-entropy the dynamics are no longer linear, and
:class:`sklearn_ntk.NTKClassifier` integrates them with ``loss="log_loss"``.
Its outputs pass through the logistic function (two classes) or the softmax
and give class probabilities, uniform at ``t = 0``.

On two interleaved half-moons with label noise this example shows:

* the probabilities along training time, all from one integration of the
  flow (:meth:`~sklearn_ntk.NTKClassifier.staged_predict_proba`);
* early stopping as the regulariser: the test log loss falls, then rises as
  the network grows over-confident on the noisy labels; the training time
  is the hyperparameter to tune, as for the squared loss;
* the squared-loss classifier at the same times, for comparison: its
  accuracy follows a similar path, but it gives scores, not probabilities.

The reduced size (default, used in CI) trains on 150 points; set
``SKLEARN_NTK_EXAMPLES_FULL=1`` for 400 and a finer grid of times.
"""

# %%
# Training once, predicting at every time
# ---------------------------------------
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from sklearn_ntk import NTKClassifier

FULL = os.environ.get("SKLEARN_NTK_EXAMPLES_FULL", "") not in ("", "0")
OUTPUT = Path(os.environ.get(
    "SKLEARN_NTK_EXAMPLES_OUTPUT",
    Path(globals().get("__file__", "examples/x.py")).resolve().parent / "_output",
))
OUTPUT.mkdir(parents=True, exist_ok=True)

n_train = 400 if FULL else 150
X, y = make_moons(n_samples=n_train + 1000, noise=0.3, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=n_train, random_state=0)

times = np.logspace(-1, 5, 25 if FULL else 13)
log_loss_clf = NTKClassifier(depth=3, t=times[-1], loss="log_loss").fit(X_train, y_train)
squared_clf = NTKClassifier(depth=3, t=times[-1]).fit(X_train, y_train)

# One integration of the flow answers every time.
staged_proba = log_loss_clf.staged_predict_proba(X_test, times)
test_log_loss = [log_loss(y_test, proba) for proba in staged_proba]
log_loss_accuracy = [np.mean(proba.argmax(axis=1) == y_test) for proba in staged_proba]
squared_accuracy = [np.mean(pred == y_test)
                    for pred in squared_clf.staged_predict(X_test, times)]
best = int(np.argmin(test_log_loss))
print(f"smallest test log loss {test_log_loss[best]:.3f} at t = {times[best]:.3g} "
      f"(accuracy {log_loss_accuracy[best]:.3f}); at t = {times[-1]:.0e}: "
      f"{test_log_loss[-1]:.3f}")

# %%
# Probabilities along t
# ---------------------
# At small t the probabilities are nearly uniform and vary smoothly: the
# flow has fitted only the kernel's largest eigen-directions.  At the best
# time the boundary follows the moons; long training makes the network
# confident everywhere near the training points, noise included.
grid = np.linspace(-2.0, 3.0, 60 if FULL else 40)
xx, yy = np.meshgrid(grid, grid - 0.5)
plane = np.column_stack([xx.ravel(), yy.ravel()])
shown = [1, best, len(times) - 1]
plane_proba = log_loss_clf.staged_predict_proba(plane, times[shown])

fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
for ax, proba, position in zip(axes, plane_proba, shown):
    contour = ax.contourf(xx, yy, proba[:, 1].reshape(xx.shape), levels=np.linspace(0, 1, 11),
                          cmap="RdBu_r")
    ax.scatter(*X_train.T, c=y_train, cmap="RdBu_r", edgecolor="k", s=15)
    ax.set_title(f"P(class 1), t = {times[position]:.2g}")
    ax.set_xlabel("x₁")
axes[0].set_ylabel("x₂")
fig.colorbar(contour, ax=axes, fraction=0.02)
fig.savefig(OUTPUT / "log_loss_probabilities_along_t.png", dpi=100)

# %%
# Early stopping as the regulariser, and the squared loss
# -------------------------------------------------------
# The test log loss has a minimum at a finite time: as for the squared loss,
# the directions of small kernel eigenvalue — the noise — are fitted last.
# Accuracy changes less than the log loss: over-confidence costs log loss
# long before it changes the predicted class.
fig, (ax_loss, ax_accuracy) = plt.subplots(1, 2, figsize=(11, 4))
ax_loss.semilogx(times, test_log_loss, marker="o")
ax_loss.axvline(times[best], color="grey", lw=0.5)
ax_loss.set_xlabel("training time t")
ax_loss.set_ylabel("test log loss")
ax_loss.set_title("cross-entropy training: test log loss")
ax_accuracy.semilogx(times, log_loss_accuracy, marker="o", label="log loss")
ax_accuracy.semilogx(times, squared_accuracy, marker="s", label="squared error")
ax_accuracy.set_xlabel("training time t")
ax_accuracy.set_ylabel("test accuracy")
ax_accuracy.set_title("accuracy along t, both losses")
ax_accuracy.legend()
fig.tight_layout()
fig.savefig(OUTPUT / "log_loss_early_stopping.png", dpi=100)
plt.show()
