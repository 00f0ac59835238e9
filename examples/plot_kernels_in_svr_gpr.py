"""
The NTK and NNGP kernels inside SVR, KernelRidge and GaussianProcessRegressor
=============================================================================

:class:`sklearn_ntk.NTK` and :class:`sklearn_ntk.NNGP` are
:mod:`sklearn.gaussian_process` kernels, so they plug into every
scikit-learn estimator that takes a kernel object: the support vector and
kernel ridge regressors call them as functions, and
:class:`~sklearn.gaussian_process.GaussianProcessRegressor` also tunes their
hyperparameters ``beta`` and ``weight_std`` by maximising the marginal
likelihood with their exact gradients.

The data is a noisy 1-D curve.  In one dimension the angle between two
inputs is 0 or π, so the bias (``beta``) carries the shape of the kernel:
we start ``beta`` at 1 and let the Gaussian process fit it.
"""

# %%
# Three estimators, one kernel
# ----------------------------
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVR

from sklearn_ntk import NNGP, NTK

OUTPUT = Path(os.environ.get(
    "SKLEARN_NTK_EXAMPLES_OUTPUT",
    Path(globals().get("__file__", "examples/x.py")).resolve().parent / "_output",
))
OUTPUT.mkdir(parents=True, exist_ok=True)

rng = np.random.RandomState(0)
X = np.sort(rng.uniform(-3, 3, 60))[:, None]
y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 0] + 0.2 * rng.standard_normal(60)
X_plot = np.linspace(-4, 4, 300)[:, None]

kernel = NTK(depth=3, beta=1.0)
svr = SVR(kernel=kernel, C=10.0, epsilon=0.1).fit(X, y)
krr = KernelRidge(kernel=kernel, alpha=0.05).fit(X, y)
print("SVR support vectors:", svr.support_.size, "of", len(X))

# %%
# The Gaussian process fits beta, weight_std and the noise level.  Any
# kernel algebra works: here the NTK plus a white-noise term.
gpr_ntk = GaussianProcessRegressor(
    kernel=NTK(depth=3, beta=1.0) + WhiteKernel(0.1), normalize_y=True
).fit(X, y)
gpr_nngp = GaussianProcessRegressor(
    kernel=NNGP(depth=3, beta=1.0) + WhiteKernel(0.1), normalize_y=True
).fit(X, y)
for name, gpr in [("NTK", gpr_ntk), ("NNGP", gpr_nngp)]:
    print(f"GPR with the {name}: {gpr.kernel_}, "
          f"log marginal likelihood {gpr.log_marginal_likelihood_value_:.2f}")

# %%
# Predictions
# -----------
# The GP's band is its posterior mean ± 2 standard deviations (noise
# included); outside the data, the NTK and NNGP kernels extrapolate almost
# linearly (ReLU networks are piecewise linear), unlike an RBF kernel,
# which would fall back to the prior mean.
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, (name, gpr) in zip(axes, [("NTK", gpr_ntk), ("NNGP", gpr_nngp)]):
    mean, std = gpr.predict(X_plot, return_std=True)
    ax.fill_between(X_plot[:, 0], mean - 2 * std, mean + 2 * std, color="C0",
                    alpha=0.2, label="GPR mean ± 2 std")
    ax.plot(X_plot[:, 0], mean, color="C0", label="GPR mean")
    if name == "NTK":
        ax.plot(X_plot[:, 0], svr.predict(X_plot), color="C1", label="SVR")
        ax.plot(X_plot[:, 0], krr.predict(X_plot), color="C2", ls="--",
                label="KernelRidge")
    ax.scatter(X[:, 0], y, s=12, color="k", label="data")
    ax.set_title(f"{name}(depth=3) kernel")
    ax.set_xlabel("x")
    ax.legend(fontsize="small", loc="upper left")
axes[0].set_ylabel("y")
fig.tight_layout()
fig.savefig(OUTPUT / "kernels_in_svr_gpr.png", dpi=100)
plt.show()
