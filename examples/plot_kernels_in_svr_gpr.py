"""
The NTK and NNGP kernels inside SVR, KernelRidge and GaussianProcessRegressor
=============================================================================

:class:`sklearn_ntk.NTK` and :class:`sklearn_ntk.NNGP` are
:mod:`sklearn.gaussian_process` kernels, so they plug into every
scikit-learn estimator that takes a kernel object: the support vector and
kernel ridge regressors call them as functions, and
:class:`~sklearn.gaussian_process.GaussianProcessRegressor` also tunes their
hyperparameters ``beta`` and ``weight_std`` by maximising the log marginal
likelihood with their exact gradients.

**What this example shows:** the Gaussian process moves both kernels'
hyperparameters and the noise level away from their starting values and
raises the log marginal likelihood; the fitted NNGP and NTK models then
describe the data about equally well, and both extrapolate almost linearly.

The data is a noisy 1-D curve.  In one dimension the angle between two
inputs is 0 or :math:`\\pi`, so the bias (``beta``) carries the shape of the
kernel: we start ``beta`` at 1 and let the Gaussian process fit it.
"""

# %%
# Three estimators, one kernel
# ----------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVR

from sklearn_ntk import NNGP, NTK

rng = np.random.RandomState(0)
X = np.sort(rng.uniform(-3, 3, 60))[:, None]
y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 0] + 0.2 * rng.standard_normal(60)
X_plot = np.linspace(-4, 4, 300)[:, None]

kernel = NTK(depth=3, beta=1.0)
svr = SVR(kernel=kernel, C=10.0, epsilon=0.1).fit(X, y)
krr = KernelRidge(kernel=kernel, alpha=0.05).fit(X, y)
print("SVR support vectors:", svr.support_.size, "of", len(X))

# %%
# The Gaussian process fits ``beta``, ``weight_std`` and the noise level
# ----------------------------------------------------------------------
# Any kernel algebra works: here each kernel plus a white-noise term.  The
# default bounds, ``beta`` in (0.01, 10) and ``weight_std`` in (0.1, 10),
# keep every corner of the search box usable by the optimiser (see the user
# guide, :ref:`gaussian_process_fitting`).  We print the log marginal
# likelihood (LML) at the starting values and after the fit.
gprs = {}
for name, Kernel in [("NTK", NTK), ("NNGP", NNGP)]:
    start = Kernel(depth=3, beta=1.0) + WhiteKernel(0.1)
    gpr = GaussianProcessRegressor(kernel=start, normalize_y=True).fit(X, y)
    fitted = gpr.kernel_.get_params()
    start_lml = gpr.log_marginal_likelihood(gpr.kernel.theta)
    print(f"{name}: beta {fitted['k1__beta']:.3g}, "
          f"weight_std {fitted['k1__weight_std']:.3g}, "
          f"noise {fitted['k2__noise_level']:.3g}")
    print(f"      LML {start_lml:.2f} at the start (beta 1, weight_std 1, "
          f"noise 0.1), {gpr.log_marginal_likelihood_value_:.2f} fitted")
    gprs[name] = gpr

# %%
# Both fits moved: every hyperparameter differs from its starting value and
# the LML went up.  The two fitted LMLs are within a few units of each other,
# so on this data neither kernel is clearly the better prior.

# %%
# Predictions
# -----------
# The GP's band is its posterior mean ± 2 standard deviations (noise
# included).  Outside the data, the NTK and NNGP kernels extrapolate almost
# linearly (ReLU networks are piecewise linear), unlike an RBF kernel,
# which would fall back to the prior mean.
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharey=True)
for ax, (name, gpr) in zip(axes, gprs.items()):
    mean, std = gpr.predict(X_plot, return_std=True)
    ax.fill_between(X_plot[:, 0], mean - 2 * std, mean + 2 * std,
                    color="C0", alpha=0.2, label="GPR mean ± 2 std")
    ax.plot(X_plot[:, 0], mean, color="C0", label="GPR mean")
    if name == "NTK":
        ax.plot(X_plot[:, 0], svr.predict(X_plot), color="C1", label="SVR")
        ax.plot(X_plot[:, 0], krr.predict(X_plot), color="C2", ls="--",
                label="KernelRidge")
    ax.scatter(X[:, 0], y, s=10, color="k", label="data")
    ax.set_title(f"{name}(depth=3), fitted")
    ax.set_xlabel("x")
    ax.legend(fontsize="small", loc="upper left")
axes[0].set_ylabel("y")
fig.tight_layout()
plt.show()
