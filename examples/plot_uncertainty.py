"""
Uncertainty of infinitely wide networks with ``return_std``
===========================================================

A network's prediction depends on its random initialisation.  For an
infinitely wide network trained by gradient flow the prediction at time
``t`` is Gaussian over initialisations, with a closed-form mean and
covariance (Lee et al. 2019, `arXiv:1902.06720
<https://arxiv.org/abs/1902.06720>`_); ``predict(X, return_std=True)``
returns its mean and standard deviation, exactly like
:class:`~sklearn.gaussian_process.GaussianProcessRegressor`.

* :class:`sklearn_ntk.NNGPRegressor` trains only the readout layer.  At
  ``t=np.inf`` its mean and std are the Bayesian posterior of the NNGP
  Gaussian process with noise ``alpha``: the same numbers as
  ``GaussianProcessRegressor(kernel=NNGP(...), alpha=alpha)``.
* :class:`sklearn_ntk.NTKRegressor` trains all layers.  Its spread is the
  spread of an ensemble of trained networks, not a Bayesian posterior, but
  it grows away from the data in the same way.
* At ``t = 0`` the spread is the prior's; training shrinks it near the data
  first.  ``staged_predict`` returns the whole path from one
  eigendecomposition.

**What this example shows:** the three points above, each checked by a
printed comparison.

The data is a noisy 1-D curve with a gap in the middle.  In one dimension
the bias carries the kernel's shape, so we use ``beta=1``.
"""

# %%
# Fit and compare with the Gaussian process
# -----------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor

from sklearn_ntk import NNGP, NNGPRegressor, NTKRegressor

rng = np.random.RandomState(0)
X = np.r_[rng.uniform(-3, -0.7, 25), rng.uniform(0.7, 3, 25)][:, None]
y = np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(50)
X_plot = np.linspace(-4, 4, 300)[:, None]

network = dict(depth=3, beta=1.0)
noise = 0.01  # variance of the observation noise, added to the diagonal

nngp = NNGPRegressor(**network, alpha=noise).fit(X, y)
ntk = NTKRegressor(**network, alpha=noise).fit(X, y)
gpr = GaussianProcessRegressor(kernel=NNGP(**network), alpha=noise,
                               optimizer=None).fit(X, y)

mean_nngp, std_nngp = nngp.predict(X_plot, return_std=True)
mean_gpr, std_gpr = gpr.predict(X_plot, return_std=True)
mean_diff = np.abs(mean_nngp - mean_gpr).max()
std_diff = np.abs(std_nngp - std_gpr).max()
print("NNGPRegressor(t=inf) against GaussianProcessRegressor(NNGP):")
print(f"  largest difference of the means {mean_diff:.1e}, "
      f"of the stds {std_diff:.1e}")
mean_ntk, std_ntk = ntk.predict(X_plot, return_std=True)

# %%
# The two agree to rounding error.  Where is each model unsure?  We compare
# the average std over the data (:math:`0.7 \le |x| \le 3`) with the one in
# the gap (:math:`|x| < 0.5`) and beyond the data (:math:`|x| > 3.5`).
on_data = (np.abs(X_plot[:, 0]) >= 0.7) & (np.abs(X_plot[:, 0]) <= 3)
in_gap = np.abs(X_plot[:, 0]) < 0.5
beyond = np.abs(X_plot[:, 0]) > 3.5
for name, std in [("NNGPRegressor", std_nngp), ("NTKRegressor", std_ntk)]:
    print(f"{name:>13}: mean std on the data {std[on_data].mean():.3f}, "
          f"in the gap {std[in_gap].mean():.3f}, "
          f"beyond {std[beyond].mean():.3f}")

# %%
# The early-stopping path
# -----------------------
# At :math:`t = 0` the std is the prior's everywhere.  The ratio of the std
# at time t to the prior's shows where training has reduced it: on the data
# long before in the gap.
times = [0.0, 3.0, 30.0, 300.0, np.inf]
means, stds = ntk.staged_predict(X_plot, times, return_std=True)
for t, std in zip(times, stds):
    ratio = std / stds[0]
    print(f"t = {t:>5g}: std / prior std, on the data "
          f"{ratio[on_data].mean():.2f}, in the gap {ratio[in_gap].mean():.2f}")

# %%
# The figure
# ----------
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), sharey=True)
panels = [
    (axes[0], mean_nngp, std_nngp, "NNGPRegressor, t = ∞\n(GP posterior)"),
    (axes[1], mean_ntk, std_ntk, "NTKRegressor, t = ∞\n(trained ensemble)"),
]
for ax, mean, std, title in panels:
    ax.fill_between(X_plot[:, 0], mean - 2 * std, mean + 2 * std,
                    alpha=0.25, label="mean ± 2 std")
    ax.plot(X_plot[:, 0], mean, label="mean")
    ax.set_title(title)
axes[0].plot(X_plot[:, 0], mean_gpr, "k:", label="GaussianProcessRegressor")
for ax in axes:
    ax.scatter(X[:, 0], y, s=8, color="k", zorder=3)
    ax.set_xlabel("x")
for i, t in enumerate(times):
    label = "t = ∞" if np.isinf(t) else f"t = {t:g}"
    line, = axes[2].plot(X_plot[:, 0], means[i], label=label)
    axes[2].plot(X_plot[:, 0], means[i] + 2 * stds[i],
                 color=line.get_color(), ls="--", lw=0.8)
    axes[2].plot(X_plot[:, 0], means[i] - 2 * stds[i],
                 color=line.get_color(), ls="--", lw=0.8)
axes[2].set_title("NTKRegressor.staged_predict\nmean, ± 2 std (dashed)")
axes[0].set_ylabel("y")
axes[0].set_ylim(-3, 3)
for ax in axes:
    ax.legend(fontsize="x-small", loc="lower left")
fig.tight_layout()
plt.show()
