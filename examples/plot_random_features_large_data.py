"""
Large data: NTKSampler random features against Nyström
======================================================

An exact kernel method needs the :math:`n \\times n` Gram matrix: 75 GiB for
100 000 training points, and a cubic-time solve.  Two approximations keep
the cost linear in :math:`n`, with :math:`m` features:

* :class:`~sklearn.kernel_approximation.Nystroem` with
  ``kernel=NTK(...)`` evaluates the exact kernel against :math:`m` random
  training points (landmarks);
* :class:`sklearn_ntk.NTKSampler` draws one finite random network and
  returns its gradient with respect to all parameters, compressed to
  :math:`m` numbers: inner products of these features approximate the NTK
  (the empirical NTK converges to the NTK as the width grows).

A linear model (here :class:`~sklearn.linear_model.Ridge`) on either set of
features approximates kernel ridge regression with the NTK, that is the
infinitely wide network trained to convergence.

**What this example shows:** both approximations improve as :math:`m`
grows; on these low-dimensional data Nyström is more accurate than the
random features for the same :math:`m`; and with all the training data,
Nyström with a few hundred features beats the exact kernel method
restricted to the 2 000 points it can afford.
"""

# %%
# The data
# --------
# ``make_friedman1``: 10 features, 5 of them informative, with noise.  Set
# ``FULL = True`` for 100 000 training points instead of 10 000 and up to
# 1 000 features instead of 500 (the exact reference stays at 2 000).
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_ntk import NTK, NTKRegressor, NTKSampler

FULL = False
# sphinx_gallery_start_ignore
# The tests and the documentation run the reduced size; the environment
# variable SKLEARN_NTK_EXAMPLES_FULL=1 runs the full one.
import os  # noqa: E402

FULL = FULL or os.environ.get("SKLEARN_NTK_EXAMPLES_FULL", "0") != "0"
# sphinx_gallery_end_ignore

n_train = 100_000 if FULL else 10_000
X, y = make_friedman1(n_samples=n_train + 2000, noise=1.0, random_state=0)
X = StandardScaler().fit_transform(X)
y = (y - y.mean()) / y.std()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=2000, random_state=0)

# %%
# The exact reference on a subset
# --------------------------------
# The exact infinitely wide network (``t=np.inf``, with a ridge ``alpha``
# against the noise) on the first 2 000 training points.
kernel = dict(depth=3, beta=0.1)
start = time.perf_counter()
exact = NTKRegressor(**kernel, alpha=1.0).fit(X_train[:2000], y_train[:2000])
exact_r2 = exact.score(X_test, y_test)
print(f"exact NTKRegressor, 2000 points: test R² {exact_r2:.3f} "
      f"({time.perf_counter() - start:.1f} s)")

# %%
# The two approximations on all training points
# ---------------------------------------------
n_features = [100, 300, 1000] if FULL else [50, 150, 500]
scores = {"Nystroem(NTK)": [], "NTKSampler": []}
for m in n_features:
    for name, features in [
        ("Nystroem(NTK)", Nystroem(kernel=NTK(**kernel), n_components=m,
                                   random_state=0)),
        ("NTKSampler", NTKSampler(**kernel, n_components=m, random_state=0)),
    ]:
        start = time.perf_counter()
        model = make_pipeline(features, Ridge(alpha=1.0)).fit(X_train, y_train)
        scores[name].append(model.score(X_test, y_test))
        print(f"{name:>13}, m = {m:>4}, {n_train} points: test R² "
              f"{scores[name][-1]:.3f} ({time.perf_counter() - start:.1f} s)")

# %%
# Nyström's features span the exact kernel's functions on its landmarks, so
# a few hundred already capture most of what 10 input dimensions allow; the
# random features carry the sampling noise of one finite network, which
# shrinks only like :math:`m^{-1/2}`.  The random features do not need the
# kernel at all, and their cost per feature does not depend on the depth's
# recursion: they pay off for high-dimensional inputs, where Nyström needs
# many landmarks.
fig, ax = plt.subplots(figsize=(6, 3.6))
for name, values in scores.items():
    ax.semilogx(n_features, values, marker="o", label=f"{name} + Ridge")
ax.axhline(exact_r2, color="k", ls="--", label="exact, 2000 points")
ax.set_xlabel("number of features m")
ax.set_ylabel("test R²")
ax.set_title(f"make_friedman1, {n_train} training points")
ax.legend(fontsize="small")
fig.tight_layout()
plt.show()
