"""
Classification trained on the cross-entropy: probabilities along t
==================================================================

Networks are trained for classification with the cross-entropy, not the
squared error.  In the infinite-width limit training still follows kernel
gradient descent with the Neural Tangent Kernel, for any cost (Jacot et
al. 2018); with the cross-entropy the dynamics are no longer linear, and
:class:`sklearn_ntk.NTKClassifier` integrates them with
``loss="log_loss"``.  Its outputs pass through the logistic function (two
classes) or the softmax and give class probabilities, uniform at
``t = 0``.

**What this example shows**, on two interleaved half-moons with label
noise:

* the probabilities along training time, all from one integration of the
  flow (:meth:`~sklearn_ntk.NTKClassifier.staged_predict_proba`);
* early stopping as the regulariser: the test log loss falls, then rises
  as the network grows over-confident on the noisy labels, so the
  training time is the hyperparameter to tune, as for the squared loss;
* the squared-loss classifier at the same times, for comparison: its best
  accuracy is within a few test points of the cross-entropy's, but it
  gives scores, not probabilities.

The reduced size (the default) trains on 150 points; set ``FULL = True``
for 400 and a finer grid of times.
"""

# %%
# Training once, predicting at every time
# ---------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from sklearn_ntk import NTKClassifier

FULL = False
# sphinx_gallery_start_ignore
# The tests and the documentation run the reduced size; the environment
# variable SKLEARN_NTK_EXAMPLES_FULL=1 runs the full one.
import os  # noqa: E402

FULL = FULL or os.environ.get("SKLEARN_NTK_EXAMPLES_FULL", "0") != "0"
# sphinx_gallery_end_ignore

n_train = 400 if FULL else 150
X, y = make_moons(n_samples=n_train + 1000, noise=0.3, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=n_train, random_state=0)

times = np.logspace(-1, 5, 25 if FULL else 13)
log_loss_clf = NTKClassifier(depth=3, t=times[-1], loss="log_loss")
log_loss_clf.fit(X_train, y_train)
squared_clf = NTKClassifier(depth=3, t=times[-1]).fit(X_train, y_train)

# One integration of the flow answers every time.
staged_proba = log_loss_clf.staged_predict_proba(X_test, times)
test_log_loss = np.array([log_loss(y_test, p) for p in staged_proba])
log_loss_accuracy = np.array([np.mean(p.argmax(axis=1) == y_test)
                              for p in staged_proba])
squared_accuracy = np.array(
    [np.mean(pred == y_test)
     for pred in squared_clf.staged_predict(X_test, times)])
best = int(np.argmin(test_log_loss))
print(f"smallest test log loss {test_log_loss[best]:.3f} at "
      f"t = {times[best]:.3g} (accuracy {log_loss_accuracy[best]:.3f}); "
      f"at t = {times[-1]:.0e}: {test_log_loss[-1]:.3f}")
print(f"best accuracy along t: log loss {log_loss_accuracy.max():.3f}, "
      f"squared error {squared_accuracy.max():.3f}")

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
    contour = ax.contourf(xx, yy, proba[:, 1].reshape(xx.shape),
                          levels=np.linspace(0, 1, 11), cmap="RdBu_r")
    ax.scatter(*X_train.T, c=y_train, cmap="RdBu_r", edgecolor="k", s=15)
    ax.set_title(f"P(class 1), t = {times[position]:.2g}")
    ax.set_xlabel("x₁")
axes[0].set_ylabel("x₂")
fig.colorbar(contour, ax=axes, fraction=0.02).set_label("P(class 1)")

# %%
# Early stopping as the regulariser, and the squared loss
# -------------------------------------------------------
# The test log loss has a minimum at a finite time: as for the squared
# loss, the directions of small kernel eigenvalue (the noise) are fitted
# last.  Accuracy changes less than the log loss: over-confidence costs
# log loss long before it changes the predicted class.
fig, (ax_loss, ax_accuracy) = plt.subplots(1, 2, figsize=(11, 4))
ax_loss.semilogx(times, test_log_loss, marker="o")
ax_loss.axvline(times[best], color="grey", lw=0.5)
ax_loss.set_xlabel("training time t")
ax_loss.set_ylabel("test log loss")
ax_loss.set_title("cross-entropy training: test log loss")
ax_accuracy.semilogx(times, log_loss_accuracy, marker="o", label="log loss")
ax_accuracy.semilogx(times, squared_accuracy, marker="s",
                     label="squared error")
ax_accuracy.set_xlabel("training time t")
ax_accuracy.set_ylabel("test accuracy")
ax_accuracy.set_title("accuracy along t, both losses")
ax_accuracy.legend()
fig.tight_layout()
plt.show()
