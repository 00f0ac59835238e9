"""
First steps: an infinitely wide network in scikit-learn
=======================================================

:class:`sklearn_ntk.NTKRegressor` is the mean prediction of an infinitely
wide fully-connected network trained by gradient descent on the squared
loss for a time ``t``.  It is an ordinary scikit-learn regressor: ``fit``,
``predict``, ``score``, pipelines and cross-validation all work as usual.
Its kernel, the Neural Tangent Kernel :class:`sklearn_ntk.NTK`, is an
ordinary scikit-learn kernel.

**What this example shows:**

* the kernel is a function of two sets of inputs, like scikit-learn's own;
* trained to convergence (``t=np.inf``), the network predicts exactly what
  :class:`~sklearn.kernel_ridge.KernelRidge` predicts with the NTK as its
  kernel and the same ``alpha``;
* a finite ``t`` stops training early: the longer the training, the closer
  the fit to the training data (noise included).
"""

# %%
# The kernel
# ----------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.kernel_ridge import KernelRidge

from sklearn_ntk import NTK, NTKRegressor

rng = np.random.RandomState(0)
X_train = np.sort(rng.uniform(-3, 3, 40))[:, None]
y_train = np.sin(2 * X_train[:, 0]) + 0.3 * rng.standard_normal(40)
X_test = np.linspace(-4, 4, 200)[:, None]

# In one dimension the bias carries the kernel's shape: beta of order 1.
kernel = NTK(depth=3, beta=1.0)
K = kernel(X_train)  # the 40 x 40 Gram matrix
K_test = kernel(X_test, X_train)  # 200 x 40
print("Gram matrices:", K.shape, K_test.shape)

# %%
# The trained network is kernel ridge regression
# ----------------------------------------------
# ``alpha`` is added to the diagonal of the training kernel, as in
# :class:`~sklearn.gaussian_process.GaussianProcessRegressor`.
network = NTKRegressor(depth=3, beta=1.0, alpha=0.1, t=np.inf)
network.fit(X_train, y_train)
ridge = KernelRidge(kernel=kernel, alpha=0.1).fit(X_train, y_train)
difference = np.abs(network.predict(X_test) - ridge.predict(X_test)).max()
print(f"largest difference from KernelRidge: {difference:.1e}")

# %%
# The difference is rounding error.  What the network adds to kernel ridge
# regression is the training time, and the spread over random
# initialisations (see the uncertainty example).
#
# Early stopping
# --------------
# ``staged_predict`` returns the predictions at many training times from one
# eigendecomposition.  We compare the training error at each time.
times = [1.0, 10.0, 100.0, np.inf]
default = NTKRegressor(depth=3, beta=1.0).fit(X_train, y_train)
on_train = default.staged_predict(X_train, times)
on_test = default.staged_predict(X_test, times)
train_mse = ((on_train - y_train) ** 2).mean(axis=1)
for t, mse in zip(times, train_mse):
    print(f"t = {t:>5g}: training MSE {mse:.3f}")

# %%
# The training error falls as ``t`` grows; at :math:`t = \infty` the network
# interpolates the training points (``alpha`` is :math:`10^{-10}` by
# default).  Which ``t`` predicts best on new data is a question for
# cross-validation (see the GridSearchCV example).
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.scatter(X_train[:, 0], y_train, s=10, color="k", label="training data",
           zorder=3)
for t, prediction in zip(times, on_test):
    label = "t = ∞" if np.isinf(t) else f"t = {t:g}"
    ax.plot(X_test[:, 0], prediction, label=label)
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.set_ylim(-2.5, 2.5)
ax.set_title("NTKRegressor(depth=3, beta=1) trained for a time t")
ax.legend(fontsize="small", ncol=2)
fig.tight_layout()
plt.show()
