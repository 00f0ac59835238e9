"""
The NTK at initialisation and after training (the paper's Figure 1)
===================================================================

Jacot, Gabriel & Hongler (2018), Figure 1, plots the empirical neural tangent
kernel :math:`\\Theta(x_0, x)` of ReLU networks of depth :math:`L = 4`
(:math:`\\beta = 0.1`, parameters :math:`N(0, 1)`, NTK parametrization) for
:math:`x_0 = (1, 0)` and :math:`x = (\\cos\\gamma, \\sin\\gamma)`,
:math:`\\gamma \\in [-\\pi, \\pi]`, for 10 initialisations of widths
:math:`n = 500` and :math:`n = 10000`, at initialisation and after 200 steps
of gradient descent (learning rate 1.0) on :math:`f^*(x) = x_1 x_2` with
random :math:`N(0, I_2)` inputs, against the limit :math:`\\Theta^\\infty`.

**What the paper shows:** the kernels of the wider network vary less
between initialisations and stay closer to :math:`\\Theta^\\infty`; during
training the kernel "inflates" (grows), much less for :math:`n = 10000` than
for :math:`n = 500`.

**What we show:** the same, with :class:`sklearn_ntk.finite.Network` for the
finite kernels and :class:`sklearn_ntk.NTK` for :math:`\\Theta^\\infty`.  The
paper does not state the number of training inputs; we use 20.  This page
runs a reduced size: widths 200 and 1000 and 4 initialisations each, enough
for both effects to show (the printed numbers below compare the widths).
``FULL = True`` runs the paper's widths 500 and 10000 and 10
initialisations (width 10000 in float32: 2 × 400 MB of hidden weights per
network, two networks trained at once; a gradient step of a width-10000
network streams its 800 MB of weights three times, so the full size takes
10 minutes to an hour).
"""

# %%
# Settings
# --------
import matplotlib.pyplot as plt
import numpy as np
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from sklearn_ntk import NTK
from sklearn_ntk.finite import Network

FULL = False  # True: the paper's widths and number of initialisations
# sphinx_gallery_start_ignore
# The tests and the documentation run the reduced size; the environment
# variable SKLEARN_NTK_EXAMPLES_FULL=1 runs the full one.
import os  # noqa: E402

FULL = FULL or os.environ.get("SKLEARN_NTK_EXAMPLES_FULL", "0") != "0"
# sphinx_gallery_end_ignore

DEPTH, BETA, LEARNING_RATE, N_STEPS, N_TRAIN = 4, 0.1, 1.0, 200, 20
WIDTHS = (500, 10000) if FULL else (200, 1000)
N_NETS = 10 if FULL else 4
gammas = np.linspace(-np.pi, np.pi, 201 if FULL else 101)
x0 = np.array([[1.0, 0.0]])
circle = np.c_[np.cos(gammas), np.sin(gammas)]

rng = np.random.RandomState(0)
X_train = rng.standard_normal((N_TRAIN, 2))
y_train = X_train[:, 0] * X_train[:, 1]

# %%
# The limit and the finite networks
# ---------------------------------
# The limit comes from :class:`sklearn_ntk.NTK`; each finite network gives
# its empirical kernel Θ(x₀, ·; θ) by the backprop formula before and after
# training.  Widths above 4096 are stored in float32 (see
# :mod:`sklearn_ntk.finite`): their fluctuations, of order
# :math:`n^{-1/2}`, dwarf float32 rounding.
limit = NTK(depth=DEPTH, beta=BETA)(x0, circle)[0]


def kernels_before_and_after_training(width, seed):
    dtype = np.float32 if width > 4096 else np.float64
    net = Network(2, depth=DEPTH, width=width, beta=BETA, random_state=seed,
                  dtype=dtype)
    before = net.ntk(x0, circle)[0]
    net.fit(X_train, y_train, learning_rate=LEARNING_RATE, n_steps=N_STEPS)
    return before, net.ntk(x0, circle)[0]


# A network runs its matrix products on one BLAS thread, so two networks
# train at once, one per core (numpy releases the GIL in its products).
with threadpool_limits(limits=1, user_api="blas"):
    results = Parallel(n_jobs=2, prefer="threads")(
        delayed(kernels_before_and_after_training)(width, seed)
        for width in WIDTHS for seed in range(N_NETS)
    )
curves = {
    width: tuple(np.array(side)
                 for side in zip(*results[i * N_NETS:(i + 1) * N_NETS]))
    for i, width in enumerate(WIDTHS)
}

# %%
# What the numbers say
# --------------------
# At :math:`\gamma = 0` (:math:`x = x_0`) we compare the kernel at
# initialisation and after training, its spread over initialisations, and
# the "inflation": the ratio of the kernel after training to the kernel at
# initialisation, averaged over the networks.  Over the whole circle, the
# RMS distance to :math:`\Theta^\infty` at initialisation measures how far
# the finite kernels scatter around the limit.
centre = np.argmin(np.abs(gammas))
print(f"Θ∞(x₀, x₀) = {limit[centre]:.4f}")
summary = {}
for width, (before, after) in curves.items():
    inflation = after[:, centre] / before[:, centre]
    distance = np.sqrt(np.mean((before - limit) ** 2))
    summary[width] = dict(inflation=inflation.mean(), distance=distance)
    print(f"width {width}: Θ(x₀, x₀) = {before[:, centre].mean():.4f} "
          f"± {before[:, centre].std(ddof=1):.4f} at t = 0, "
          f"{after[:, centre].mean():.4f} ± {after[:, centre].std(ddof=1):.4f}"
          f" after {N_STEPS} steps")
    print(f"  inflation ×{inflation.mean():.3f}; RMS distance to Θ∞ "
          f"at t = 0: {distance:.4f}")

# %%
# The wider network's kernels lie closer to the limit and inflate less
# during training, as in the paper.  Both differences grow with the ratio of
# the widths: in the full size (widths 500 and 10000) they are larger than
# in this reduced run.

# %%
# The figure
# ----------
fig, axes = plt.subplots(1, len(WIDTHS), figsize=(8, 3.8), sharey=True)
for ax, (width, (before, after)) in zip(axes, curves.items()):
    for i in range(N_NETS):
        ax.plot(gammas, before[i], color="tab:blue", lw=0.8, alpha=0.7,
                label="t = 0" if i == 0 else None)
        ax.plot(gammas, after[i], color="tab:orange", lw=0.8, alpha=0.7,
                label=f"after {N_STEPS} steps" if i == 0 else None)
    ax.plot(gammas, limit, color="black", lw=2, label="n = ∞ (NTK)")
    ax.set_title(f"width n = {width}, {N_NETS} initialisations")
    ax.set_xlabel("γ")
axes[0].set_ylabel("Θ(x₀, (cos γ, sin γ))")
axes[0].legend(fontsize="small")
fig.suptitle("Empirical NTK of depth-4 ReLU networks (Jacot et al., Fig. 1)")
fig.tight_layout()
plt.show()
