"""
Convergence along kernel principal components, and early stopping (Figure 3)
============================================================================

Jacot, Gabriel & Hongler (2018), Section 6 and Figure 3, take :math:`N = 512`
MNIST digits and the kernel principal components :math:`f^{(i)}` of the NTK
(non-centred kernel PCA of :math:`\\Theta(X, X)/N`, eigenvalues
:math:`\\lambda_1 > \\lambda_2 > \\lambda_3 \\ldots`).  Kernel gradient
descent (their Section 5) moves the network function along each component
at its own rate :math:`e^{-\\lambda_i t}`: with the target
:math:`f^* = f_\\theta(0) + 0.5 f^{(2)}` the difference
:math:`f^* - f_t = g_t + h_t` (:math:`g_t` along :math:`f^{(2)}`,
:math:`h_t` orthogonal to it) should have
:math:`\\|g_t\\| = 0.5 e^{-\\lambda_2 t}` and :math:`h_t = 0`.  They train
depth-4 ReLU networks (:math:`\\beta = 0.1`, parameters :math:`N(0, 1)`, NTK
parametrization) of widths 100, 1000 and 10000, two initialisations each.

**What the paper shows:** :math:`\\|g_t\\|` follows
:math:`0.5 e^{-\\lambda_2 t}` for every width, and the deviation
:math:`\\|h_t\\|` from the straight path is visible for small widths and
shrinks as the width grows.  Since the largest components are learned
first, stopping early fits them and leaves the noisy small ones out: "early
stopping" is kernel-PCA regularisation.

**What we show:** the same on scikit-learn's ``load_digits`` (8 × 8 images
scaled to [0, 1], the offline stand-in for MNIST; its kernel has
:math:`\\lambda_2 \\approx \\lambda_3`, so the second component is harder to
isolate than MNIST's).  :math:`\\Theta^\\infty` and its principal components
come from :class:`sklearn_ntk.NTK`, the networks from
:class:`sklearn_ntk.finite.Network`.  Time is the gradient-flow time
:math:`\\eta \\times` (number of steps): rather than the paper's learning
rate 1, which needs thousands of steps for :math:`e^{-\\lambda_2 t}` to
decay, we take :math:`\\eta = 0.5/\\lambda_1` (gradient descent is stable for
:math:`\\eta \\lambda_1 < 2`, and the margin absorbs the growth of the
empirical kernel of narrow networks during training; along :math:`f^{(2)}`
one step multiplies the residual by :math:`1 - \\eta\\lambda_2` instead of
:math:`e^{-\\eta\\lambda_2}`, a relative difference below 0.1 % per step
here).  Then, early stopping on real data: the validation error of
``NTKRegressor`` against t, from one ``staged_predict`` call, with 25 % of
the training labels corrupted.

This page runs a reduced size: :math:`N = 128` digits, widths 100, 300 and
1000 and one initialisation each; the printed numbers below check both
claims at that size.  ``FULL = True`` runs the paper's :math:`N = 512`,
widths 100, 1000 and 10000 and two initialisations (width 10000 in float32,
two networks trained at once: a gradient step on 512 points costs
:math:`6 \\cdot 10^{11}` flops, 10–20 s on one core, for some 130 steps:
about an hour in all).
"""

# %%
# Settings and the kernel principal components
# --------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from joblib import Parallel, delayed
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from sklearn_ntk import NTK, NTKRegressor
from sklearn_ntk.finite import Network

FULL = False  # True: the paper's sizes
# sphinx_gallery_start_ignore
# The tests and the documentation run the reduced size; the environment
# variable SKLEARN_NTK_EXAMPLES_FULL=1 runs the full one.
import os  # noqa: E402

FULL = FULL or os.environ.get("SKLEARN_NTK_EXAMPLES_FULL", "0") != "0"
# sphinx_gallery_end_ignore

DEPTH, BETA = 4, 0.1
N = 512 if FULL else 128
WIDTHS = (100, 1000, 10000) if FULL else (100, 300, 1000)
N_INITS = 2 if FULL else 1

digits, labels = load_digits(return_X_y=True)
digits = digits / 16.0  # pixel intensities in [0, 1], as for MNIST
X, X_labels = digits[:N], labels[:N]

# Non-centred kernel PCA of Θ∞(X, X)/N.  Functions on the N points are
# vectors with the norm ‖f‖² = mean(f²) of the paper's p_in, so the unit
# principal components are sqrt(N) times the unit eigenvectors.
kernel_matrix = NTK(depth=DEPTH, beta=BETA)(X) / N
eigenvalues, eigenvectors = np.linalg.eigh(kernel_matrix)
eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
components = np.sqrt(N) * eigenvectors[:, :3].T  # f⁽¹⁾, f⁽²⁾, f⁽³⁾
lambda_1, lambda_2, lambda_3 = eigenvalues[:3]
print(f"λ1 = {lambda_1:.5f}, λ2 = {lambda_2:.5f}, λ3 = {lambda_3:.5f}")
print("(the paper, on MNIST: 0.0457, 0.00108, 0.00078)")

LEARNING_RATE = 0.5 / lambda_1
# Train until e^(−λ₂t) = e^(−3).
N_STEPS = int(np.ceil(3.0 / (lambda_2 * LEARNING_RATE)))
flow_time = LEARNING_RATE * np.arange(N_STEPS + 1)
print(f"learning rate {LEARNING_RATE:.2f}, {N_STEPS} steps, flow time "
      f"{flow_time[-1]:.0f}")

# %%
# Training towards :math:`f_\theta(0) + 0.5 f^{(2)}`
# --------------------------------------------------
# The callback of :meth:`~sklearn_ntk.finite.Network.fit` receives the
# training-set predictions before every step: the whole path f_t on X.
f2, f3 = components[1], components[2]


def train_towards_second_component(width, seed):
    dtype = np.float32 if width > 4096 else np.float64
    net = Network(X.shape[1], depth=DEPTH, width=width, beta=BETA,
                  random_state=seed, dtype=dtype)
    target = net.predict(X) + 0.5 * f2
    path = []
    net.fit(X, target, learning_rate=LEARNING_RATE, n_steps=N_STEPS,
            callback=lambda step, network, fitted: path.append(fitted))
    residual = target - np.array(path)  # f* − f_t, one row per step
    g = residual @ f2 / N  # coordinate along f⁽²⁾
    h = residual - g[:, None] * f2
    moved = np.array(path) - path[0]  # f_t − f_0 in the (f⁽²⁾, f⁽³⁾) plane
    return dict(g=np.abs(g), h=np.sqrt(np.mean(h**2, axis=1)),
                along_2=moved @ f2 / N, along_3=moved @ f3 / N)


# A network runs its matrix products on one BLAS thread, so two networks
# train at once, one per core (numpy releases the GIL in its products).
runs = [(width, seed) for width in WIDTHS for seed in range(N_INITS)]
with threadpool_limits(limits=1, user_api="blas"):
    results = Parallel(n_jobs=2, prefer="threads")(
        delayed(train_towards_second_component)(width, seed)
        for width, seed in runs
    )
paths = dict(zip(runs, results))

theory = 0.5 * np.exp(-lambda_2 * flow_time)
print(f"theory: ‖g_t‖ = {theory[-1]:.4f} at the end, h_t = 0")
for (width, seed), path in paths.items():
    print(f"width {width:>5} (init {seed}): ‖g_t‖ at the end "
          f"{path['g'][-1]:.4f}, largest gap to theory "
          f"{np.abs(path['g'] - theory).max():.4f},")
    print(f"{'':>20}largest ‖h_t‖ {path['h'].max():.4f}")

# %%
# Every width follows :math:`0.5 e^{-\lambda_2 t}`, more closely the wider
# the network: the largest gap to the theory and the deviation
# :math:`\|h_t\|` from the straight path both shrink as the width grows, as
# in the paper.

# %%
# Early stopping on real data
# ---------------------------
# ``NTKRegressor`` gives the mean prediction of infinitely wide networks at
# every time t from one eigendecomposition.  With a quarter of the training
# labels replaced by random ones, the small kernel principal components
# carry mostly noise: they are fitted last, so the validation error has a
# minimum at a finite t, below its value at :math:`t = \infty`.
rng = np.random.RandomState(0)
noisy = X_labels.copy()
corrupt = rng.rand(N) < 0.25
noisy[corrupt] = rng.randint(10, size=corrupt.sum())
Y = np.eye(10)[noisy] - 0.1  # one-hot targets, centred
X_val, val_labels = digits[N:N + 1000], labels[N:N + 1000]
Y_val = np.eye(10)[val_labels] - 0.1
times = np.r_[0.0, np.logspace(0, 6, 49), np.inf]
regressor = NTKRegressor(depth=DEPTH, beta=BETA, learning_rate=1.0).fit(X, Y)
staged = regressor.staged_predict(X_val, times)  # (n_times, n_val, 10)
val_mse = np.mean((staged - Y_val) ** 2, axis=(1, 2))
val_error = np.mean(staged.argmax(axis=2) != val_labels, axis=1)
best = np.argmin(val_mse[:-1])
print(f"validation MSE: best {val_mse[best]:.4f} at t = {times[best]:.3g} "
      f"(error rate {val_error[best]:.3f})")
print(f"                at t = ∞ {val_mse[-1]:.4f} "
      f"(error rate {val_error[-1]:.3f})")

# %%
# The figure
# ----------
fig, axes = plt.subplots(2, 2, figsize=(9, 7.5))
ax = axes[0, 0]
scatter = ax.scatter(f2, f3, c=X_labels, cmap="tab10", s=12)
fig.colorbar(scatter, ax=ax, label="digit")
ax.set(title="(a) digits in the 2nd and 3rd\nNTK principal components",
       xlabel="f⁽²⁾(x)", ylabel="f⁽³⁾(x)")

colours = dict(zip(WIDTHS, ["tab:red", "tab:green", "tab:blue"]))
ax = axes[0, 1]
ax.plot([0, 0.5], [0, 0], color="black", lw=2, label="n = ∞")
for (width, seed), path in paths.items():
    ax.plot(path["along_2"], path["along_3"], color=colours[width],
            label=f"n = {width}" if seed == 0 else None)
ax.set(title="(b) $f_t - f_0$ in the plane of $f^{(2)}, f^{(3)}$",
       xlabel="along f⁽²⁾", ylabel="along f⁽³⁾")
ax.legend(fontsize="small")

ax = axes[1, 0]
ax.plot(flow_time, theory, color="black", lw=2,
        label=r"$0.5\, e^{-\lambda_2 t}$")
for (width, seed), path in paths.items():
    ax.plot(flow_time, path["g"], color=colours[width],
            label=f"$\\|g_t\\|$, n = {width}" if seed == 0 else None)
    ax.plot(flow_time, path["h"], color=colours[width], ls="--",
            label=f"$\\|h_t\\|$, n = {width}" if seed == 0 else None)
ax.set(title="(c) convergence along $f^{(2)}$ ($g_t$)\nand deviation ($h_t$)",
       xlabel="t (learning rate × steps)", ylabel="norm")
ax.legend(fontsize="small")

ax = axes[1, 1]
finite = np.isfinite(times) & (times > 0)
ax.semilogx(times[finite], val_mse[finite], color="tab:blue", label="MSE")
ax.axhline(val_mse[-1], color="tab:blue", ls=":", label="MSE at t = ∞")
ax.axvline(times[best], color="black", ls="--",
           label=f"best t = {times[best]:.3g}")
ax.set(title="(d) early stopping with\nNTKRegressor.staged_predict",
       xlabel="t", ylabel="validation MSE",
       ylim=(0.95 * val_mse.min(), val_mse[finite].max()))
rate_ax = ax.twinx()
rate_ax.semilogx(times[finite], val_error[finite], color="tab:orange")
rate_ax.set_ylabel("validation error rate", color="tab:orange")
rate_ax.set_ylim(0.95 * val_error.min(), min(1.0, 2.5 * val_error.min()))
ax.legend(fontsize="small", loc="upper right")
fig.suptitle(f"Depth-4 ReLU networks on {N} digits (Jacot et al., Fig. 3)")
fig.tight_layout()
plt.show()
