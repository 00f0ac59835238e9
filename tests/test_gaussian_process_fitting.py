"""The kernels' hyperparameters fitted by GaussianProcessRegressor.

GaussianProcessRegressor maximises the log marginal likelihood (LML) with
L-BFGS-B, whose first step follows the full gradient and, on targets whose
scale does not match the kernel's, lands on a corner of the box of bounds.
Where K + noise is not positive definite the LML is -inf with a zero
gradient, and the optimiser stops at its start without a warning.  These
tests check that the default bounds let it move, that the README quickstart
runs without a warning, and the exact redundancy between a ConstantKernel
factor and the network's hyperparameters that the documentation states.
"""

import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg, stats
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
from sklearn.preprocessing import StandardScaler

from sklearn_ntk import NNGP, NTK, kernels_by_depth

README = Path(__file__).resolve().parents[1] / "README.md"
EPS = np.finfo(float).eps
HOMOGENEOUS = ["relu", "leaky_relu", "abs", "identity"]


def friedman1():
    """make_friedman1 with standardised inputs and its raw targets (mean 14)."""
    X, y = make_friedman1(200, noise=0.5, random_state=0)
    return StandardScaler().fit_transform(X), y


def x_sin_x():
    """scikit-learn's own GP test data, y = x sin x, with standardised x."""
    x = np.atleast_2d([1.0, 3.0, 5.0, 6.0, 7.0, 8.0]).T
    return StandardScaler().fit_transform(x), (x * np.sin(x)).ravel()


class RecordingGPR(GaussianProcessRegressor):
    """Records every LML the optimiser evaluates."""

    def log_marginal_likelihood(self, theta=None, eval_gradient=False,
                                clone_kernel=True):
        result = super().log_marginal_likelihood(theta, eval_gradient, clone_kernel)
        if theta is not None:
            self.evaluated_.append(result[0] if eval_gradient else result)
        return result

    def fit(self, X, y):
        self.evaluated_ = []
        return super().fit(X, y)


@pytest.mark.parametrize("kernel_class", [NTK, NNGP])
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize(
    "data, white_noise",
    [(friedman1, True), (x_sin_x, True), (x_sin_x, False)],
    ids=["friedman1+white", "x_sin_x+white", "x_sin_x"],
)
def test_default_bounds_let_the_optimiser_move(kernel_class, activation, data,
                                               white_noise):
    # With the former bounds (1e-5, 1e5) the first step reached corners where
    # K + noise is not positive definite: on x sin x with a WhiteKernel the
    # depth-3 relu NNGP stayed at its start (LML -48.2 instead of -16.8).
    X, y = data()
    kernel = kernel_class(depth=3, activation=activation)
    if white_noise:
        kernel = kernel + WhiteKernel()
    gpr = RecordingGPR(kernel=kernel, random_state=0).fit(X, y)
    # No trial point was a kernel the Cholesky factorisation rejects.
    assert np.all(np.isfinite(gpr.evaluated_))
    start = gpr.log_marginal_likelihood(kernel.theta)
    # Had the start been the maximum-likelihood point, 2 (LML_fit - LML_start)
    # would follow a chi-squared law with one degree of freedom per
    # hyperparameter (Wilks): the improvement must reject the start at level
    # 1e-6.  A stalled optimiser improves by 0.
    n_free = kernel.theta.size
    assert gpr.log_marginal_likelihood_value_ - start > 0.5 * stats.chi2.isf(
        1e-6, n_free
    )
    if data is x_sin_x and not white_noise:
        # The reference point: weight_std = 3 (LML -485 with erf).
        hand_picked = kernel.clone_with_theta(np.log([0.1, 3.0]))
        assert gpr.log_marginal_likelihood_value_ > gpr.log_marginal_likelihood(
            hand_picked.theta
        )


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_every_corner_of_the_default_box_gives_a_positive_definite_kernel(activation):
    # L-BFGS-B's first trial point is a corner of the box; K + noise must be
    # finite and positive definite there at every depth up to 10, with the
    # smallest noise level WhiteKernel's default bounds allow.  With beta up
    # to 100 the corner (100, 0.1) failed on diabetes (NTK, relu, depth 6),
    # where the bias dominates and rounding erases the inputs' share of K.
    noise = WhiteKernel().noise_level_bounds[0]
    datasets = {
        "diabetes": StandardScaler().fit_transform(load_diabetes().data),
        "x_sin_x": x_sin_x()[0],
    }
    default = NTK()
    corners = itertools.product(default.beta_bounds, default.weight_std_bounds)
    failures = []
    for (beta, weight_std), (name, X) in itertools.product(corners, datasets.items()):
        kernels = dict(zip(["nngp", "ntk"], kernels_by_depth(
            X, depth=10, activation=activation, beta=beta, weight_std=weight_std)))
        for kind, depth in itertools.product(["ntk", "nngp"], range(1, 11)):
            K = kernels[kind][depth - 1]
            try:
                assert np.all(np.isfinite(K))
                linalg.cholesky(K + noise * np.eye(len(K)))
            except (AssertionError, linalg.LinAlgError):
                failures.append((name, kind, depth, beta, weight_std))
    assert not failures


def test_readme_quickstart_runs_without_any_warning():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["mean"].shape == namespace["std"].shape == (5,)
    # No factor redundant with weight_std in the relu NNGP prior.
    parts = namespace["gpr"].kernel_.get_params().values()
    assert not any(isinstance(part, ConstantKernel) for part in parts)


# -- which hyperparameters are redundant -------------------------------------


def _relative_difference(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("kernel_class", [NTK, NNGP])
@pytest.mark.parametrize("activation", HOMOGENEOUS)
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_constant_factor_rescales_inputs_for_homogeneous_activations(
    kernel_class, activation, depth, X
):
    # c K(x, x'; β, σ_w) = K(√c x, √c x'; √c β, σ_w), and with β = 0,
    # c K(σ_w) = K(c^(1/(2L)) σ_w).  Scalings by powers of two are exact, so
    # both sides round the same operations on scaled numbers; we allow
    # 4 eps per layer in case an implementation rounds a scale-dependent step.
    tolerance = 4 * depth * EPS
    kernel = kernel_class(depth=depth, activation=activation, beta=0.3, weight_std=1.3)
    scaled = kernel_class(depth=depth, activation=activation, beta=0.6, weight_std=1.3)
    assert _relative_difference(4.0 * kernel(X), scaled(2.0 * X)) <= tolerance
    no_bias = kernel_class(depth=depth, activation=activation, beta=0.0, weight_std=1.3)
    wider = kernel_class(depth=depth, activation=activation, beta=0.0, weight_std=2.6)
    assert _relative_difference(4.0**depth * no_bias(X), wider(X)) <= tolerance


@pytest.mark.parametrize("kernel_class", [NTK, NNGP])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_constant_factor_is_redundant_for_identity_networks_with_bias(
    kernel_class, depth, X
):
    # A linear network's kernel is a xᵀx' + b: c K(β, σ_w) = K(β', σ_w') with
    # σ_w' = c^(1/(2L)) σ_w and β' matching the constant b (∝ β²) at x = 0.
    c, beta, weight_std = 3.7, 0.4, 1.3
    new_weight_std = c ** (1 / (2 * depth)) * weight_std

    def offset(w):
        unit_bias = kernel_class(depth=depth, activation="identity", beta=1.0,
                                 weight_std=w)
        return unit_bias(np.zeros((1, X.shape[1])))[0, 0]

    new_beta = beta * np.sqrt(c * offset(weight_std) / offset(new_weight_std))
    kernel = kernel_class(depth=depth, activation="identity", beta=beta,
                          weight_std=weight_std)
    equivalent = kernel_class(depth=depth, activation="identity", beta=new_beta,
                              weight_std=new_weight_std)
    # A few roundings per layer in each kernel, the power and the square root,
    # relative to the largest entry (a xᵀx' + b cancels in some entries).
    assert _relative_difference(c * kernel(X), equivalent(X)) <= 16 * depth * EPS


@pytest.mark.parametrize("kernel_class", [NTK, NNGP])
@pytest.mark.parametrize("activation", ["erf", "tanh", "sin", "gelu"])
def test_constant_factor_is_not_redundant_for_other_activations(
    kernel_class, activation, X
):
    # The same identities fail by far more than rounding once σ is not
    # positively homogeneous: a ConstantKernel is then a separate amplitude.
    kernel = kernel_class(depth=3, activation=activation, beta=0.3, weight_std=1.3)
    scaled = kernel_class(depth=3, activation=activation, beta=0.6, weight_std=1.3)
    assert _relative_difference(4.0 * kernel(X), scaled(2.0 * X)) > 1e-3
    no_bias = kernel_class(depth=3, activation=activation, beta=0.0, weight_std=1.3)
    wider = kernel_class(depth=3, activation=activation, beta=0.0, weight_std=2.6)
    assert _relative_difference(4.0**3 * no_bias(X), wider(X)) > 1e-3
