"""The NNGP/NTK recursion against outside references.

* neural-tangents 0.6.5 (tests/data, float64): closed forms agree to
  rounding, 2 (d + 16 depth) eps times the kernel's measured condition
  (a d-term first layer and ~16 elementwise roundings a layer, on each side);
* the reference table of the user guide (ReLU, closed-form arc-cosine
  recursion);
* Monte-Carlo: empirical kernels of random finite networks of width 2048,
  written here independently of the package (forward pass and the
  backpropagation formula), within 5 standard errors plus the O(1/width)
  finite-width bias.
"""

from pathlib import Path

import numpy as np
import pytest

from sklearn_ntk._activations import ACTIVATIONS, get_activation
from sklearn_ntk._recursion import TILE_SIZE, diagonal, kernel_matrices

REFERENCE = np.load(Path(__file__).parent / "data" / "neural_tangents_reference.npz")
EPS = np.finfo(float).eps
KERNEL_KEYS = [key for key in REFERENCE.files if key.startswith(("ntk_xy", "nngp_xy"))]


def _kernels(X, Y=None, depth=3, activation="relu", beta=0.1, weight_std=1.0, **kwargs):
    return kernel_matrices(X, Y, depth=depth, activation=activation, beta=beta,
                           weight_std=weight_std, kernel="both", **kwargs)


@pytest.mark.parametrize("key", KERNEL_KEYS)
def test_matches_neural_tangents(key, condition):
    kind, activation, depth, beta, weight_std = key.split("|")

    def kernel(X, Y):
        result = _kernels(X, Y, depth=int(depth), activation=activation,
                          beta=float(beta), weight_std=float(weight_std))
        return result.ntk if kind == "ntk_xy" else result.nngp

    X, Y = REFERENCE["X"], REFERENCE["Y"]
    # Both sides round a d-term first layer and ~16 elementwise passes a layer
    # (float64 on both sides), amplified by the kernel's condition.
    rtol = 2 * (X.shape[1] + 16 * int(depth)) * EPS * condition(kernel, X, Y)
    np.testing.assert_allclose(kernel(X, Y), REFERENCE[key], rtol=rtol)


@pytest.mark.parametrize(
    "depth, beta, ntk_xy, ntk_xx, nngp_xy, nngp_xx",
    [
        (2, 0.0, 0.251121503541497, 0.5, 0.159041818445894, 0.25),
        (2, 0.1, 0.269760850493298, 0.52, 0.173793439301138, 0.265),
        (3, 0.0, 0.178251441381667, 0.375, 0.087912843226440, 0.125),
        (3, 0.1, 0.203221804236058, 0.4025, 0.105072179540061, 0.1425),
        (4, 0.1, 0.143076689459114, 0.2825, 0.065453837075436, 0.08125),
    ],
)
def test_matches_the_relu_table_of_the_paper_settings(
    depth, beta, ntk_xy, ntk_xx, nngp_xy, nngp_xx, condition
):
    X = np.array([[1.0, 0.0], [np.cos(1.0), np.sin(1.0)]])
    result = _kernels(X, depth=depth, beta=beta)
    # The table is exact to its 15 decimals (atol: half a unit of the last);
    # our side rounds a 2-term first layer and ~16 passes a layer.
    cond = condition(lambda X: _kernels(X, depth=depth, beta=beta).ntk, X)
    rtol, atol = (2 + 16 * depth) * EPS * cond, 5e-16
    np.testing.assert_allclose(result.ntk, [[ntk_xx, ntk_xy], [ntk_xy, ntk_xx]],
                               rtol=rtol, atol=atol)
    np.testing.assert_allclose(result.nngp, [[nngp_xx, nngp_xy], [nngp_xy, nngp_xx]],
                               rtol=rtol, atol=atol)


def _empirical_kernels(X, depth, width, activation, beta, weight_std, rng):
    """Empirical NNGP and NTK of one random network in NTK parametrization.

    Written from the user guide's formula ("Finite networks and the
    empirical NTK"), independently of the package:
    Θ̂(x, x') = Σ_l [σ_w² α_l·α_l'/n_l + β²] [δ_{l+1}·δ_{l+1}'].
    """
    sigma = get_activation(activation)
    widths = [X.shape[1]] + [width] * (depth - 1) + [1]
    weights = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(depth)]
    biases = [rng.standard_normal(widths[i + 1]) for i in range(depth)]
    activations, preactivations = [X], []
    for layer in range(depth):
        pre = (weight_std / np.sqrt(widths[layer])) * activations[-1] @ weights[layer].T
        pre += beta * biases[layer]
        preactivations.append(pre)
        if layer < depth - 1:
            activations.append(sigma.function(pre))
    deltas = [np.ones((X.shape[0], 1))]
    for layer in range(depth - 1, 0, -1):
        back = deltas[0] @ weights[layer] * (weight_std / np.sqrt(widths[layer]))
        deltas.insert(0, back * sigma.derivative(preactivations[layer - 1]))
    ntk = np.zeros((X.shape[0], X.shape[0]))
    for layer in range(depth):
        a = activations[layer]
        forward = weight_std**2 * a @ a.T / widths[layer] + beta**2
        ntk += forward * (deltas[layer] @ deltas[layer].T)
    a = activations[-1]
    nngp = weight_std**2 * a @ a.T / widths[depth - 1] + beta**2
    return nngp, ntk


@pytest.mark.parametrize(
    "activation",
    ["relu"] + [pytest.param(name, marks=pytest.mark.slow)
                for name in ("erf", "tanh", "gelu")],
)
def test_monte_carlo_finite_networks_converge_to_the_limit(activation):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((4, 5))
    depth, width, n_networks = 3, 2048, 12
    samples = [
        _empirical_kernels(X, depth, width, activation, 0.2, 1.3, rng)
        for _ in range(n_networks)
    ]
    limit = _kernels(X, depth=depth, activation=activation, beta=0.2, weight_std=1.3)
    for index, exact in enumerate((limit.nngp, limit.ntk)):
        draws = np.array([sample[index] for sample in samples])
        standard_error = draws.std(axis=0, ddof=1) / np.sqrt(n_networks)
        # 5 standard errors: two-sided p = 4e-4 an entry under Student's t
        # with 11 degrees of freedom.  The finite-width bias is O(1/width):
        # a second-order term, the relative variance 2/width of an empirical
        # covariance times the dual maps' relative curvature (<= 1), for each
        # of the depth - 1 = 2 layers after the first: 4/width.
        bias_allowance = 2 * (depth - 1) / width * np.abs(exact).max()
        assert np.all(np.abs(draws.mean(axis=0) - exact) <= 5 * standard_error
                      + bias_allowance)


def test_diagonal_is_computed_without_the_matrix_and_matches_it_exactly():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    X[7] = X[3]  # a duplicate point
    for activation in ("relu", "tanh", "gelu"):
        diag = diagonal(X, depth=4, activation=activation, beta=0.1, weight_std=1.0)
        full = _kernels(X, depth=4, activation=activation)
        assert np.array_equal(np.diag(full.ntk), diag.ntk[-1])
        assert np.array_equal(np.diag(full.nngp), diag.nngp[-1])
        assert np.array_equal(full.ntk, full.ntk.T)


def test_all_depths_come_from_one_pass_and_equal_separate_depths():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((9, 4)), rng.standard_normal((6, 4))
    every = _kernels(X, Y, depth=5, all_depths=True)
    assert every.ntk.shape == (5, 9, 6)
    for depth in range(1, 6):
        single = _kernels(X, Y, depth=depth)
        # The same tile loop, which copies out each layer: the same operations.
        np.testing.assert_array_equal(every.ntk[depth - 1], single.ntk)
        np.testing.assert_array_equal(every.nngp[depth - 1], single.nngp)


def test_depth_one_is_the_linear_kernel():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5, 3))
    result = _kernels(X, depth=1, beta=0.5, weight_std=2.0)
    expected = 4.0 * X @ X.T / 3 + 0.25
    # Each side: a 3-term dot product (3 eps relative to Σ|x_k y_k|), the
    # scaling by 4/3 (<= 2 roundings) and the bias (1 rounding of |K|).
    bound = 2 * EPS * ((3 + 2) * 4.0 * np.abs(X) @ np.abs(X).T / 3 + np.abs(expected))
    rtol = np.max(bound / np.abs(expected))
    np.testing.assert_allclose(result.ntk, expected, rtol=rtol)
    np.testing.assert_allclose(result.nngp, expected, rtol=rtol)


@pytest.mark.parametrize("tile_size", [1, 3, 7, 64])
def test_threads_are_bit_identical_and_tiling_changes_only_rounding(
    tile_size, condition
):
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((20, 4)), rng.standard_normal((13, 4))
    # Another order of the 4-term first-layer sums, then the same ~16 passes a
    # layer on inputs that differ, each rounding on both sides; depth 3.
    rtol = 2 * (4 + 16 * 3) * EPS * condition(
        lambda X, Y: _kernels(X, Y, tile_size=10**9).ntk, X, Y)
    serial = _kernels(X, Y, tile_size=tile_size)
    threaded = _kernels(X, Y, tile_size=tile_size, n_jobs=2)
    np.testing.assert_array_equal(threaded.ntk, serial.ntk)
    # BLAS sums tiles of other shapes in another order: last-bit differences.
    # A tile larger than the matrix is the matrix: scratch is sized to it,
    # not to tile_size² (10**9² entries would not fit anywhere).
    untiled = _kernels(X, Y, tile_size=10**9)
    np.testing.assert_allclose(serial.ntk, untiled.ntk, rtol=rtol)
    symmetric_serial = _kernels(X, tile_size=tile_size)
    symmetric_threaded = _kernels(X, tile_size=tile_size, n_jobs=2)
    np.testing.assert_array_equal(symmetric_threaded.ntk, symmetric_serial.ntk)
    np.testing.assert_allclose(symmetric_serial.ntk, _kernels(X, tile_size=10**9).ntk,
                               rtol=rtol)
    assert np.array_equal(symmetric_serial.ntk, symmetric_serial.ntk.T)


def test_x_against_itself_equals_x_against_a_copy(condition):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 4))
    # As for tiling: 4-term sums in another order, ~16 passes a layer, depth 3.
    rtol = 2 * (4 + 16 * 3) * EPS * condition(lambda X: _kernels(X, X.copy()).ntk, X)
    np.testing.assert_allclose(_kernels(X, tile_size=8).ntk,
                               _kernels(X, X.copy(), tile_size=8).ntk, rtol=rtol)


@pytest.mark.parametrize(
    "activation, weight_std",
    [(name, 1.0) if name != "softplus"
     else pytest.param(name, 1.0, marks=pytest.mark.slow) for name in ACTIVATIONS]
    + [(name, 1.4) for name in ("relu", "abs", "erf", "gelu", "sin")]
    + [pytest.param("tanh", 1.4, marks=pytest.mark.slow)],
)  # slow: the longest quadrature cases, 1.5-6 s each
def test_deep_networks_stay_finite(activation, weight_std):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 3))
    X[1] = X[0]
    X[2] = -X[0]
    X[3] = 0.0
    result = _kernels(X, depth=50, activation=activation, beta=0.0,
                      weight_std=weight_std, eval_gradient=True)
    for values in (result.ntk, result.nngp, result.ntk_gradient, result.nngp_gradient):
        assert np.all(np.isfinite(values))


def test_zero_inputs_without_bias_follow_neural_tangents():
    # REFERENCE["X"][3] is the zero vector; the beta = 0.1 keys cover it with a
    # bias, and without one the NNGP row of a relu network vanishes.
    X = REFERENCE["X"]
    result = _kernels(X, depth=3, beta=0.0)
    assert np.all(result.nngp[3] == 0.0)
    assert np.all(np.isfinite(result.ntk))


def test_scaled_duplicates_and_antipodes_are_exact():
    # Row 5 of the reference X is 3 × row 1: correlation exactly 1 at layer 1.
    x = np.array([[0.3, -1.2, 0.5]])
    X = np.vstack([x, 3 * x, -x])
    result = _kernels(X, depth=3, beta=0.0)
    # Relu with beta = 0 is positively homogeneous: Σ(x, 3x) = 3 Σ(x, x).
    # Rounding only: 3x (1), the 3-term products (3) and ~16 passes a layer
    # on each side; at θ = 0 a layer is a product of square roots (condition 1).
    rtol = 2 * (1 + 3 + 16 * 3) * EPS
    np.testing.assert_allclose(result.nngp[0, 1], 3 * result.nngp[0, 0], rtol=rtol)
    np.testing.assert_allclose(result.ntk[0, 1], 3 * result.ntk[0, 0], rtol=rtol)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_values_are_bit_identical_with_and_without_gradients(activation):
    # Several tiles and tasks (n > TILE_SIZE): the value arithmetic must not
    # depend on eval_gradient anywhere, tile layout included.
    X = np.random.default_rng(3).standard_normal((TILE_SIZE + 45, 4))
    params = dict(depth=3, activation=activation, beta=0.2, weight_std=1.3,
                  kernel="both", all_depths=True)
    plain = kernel_matrices(X, **params)
    with_gradient = kernel_matrices(X, eval_gradient=True, **params)
    np.testing.assert_array_equal(with_gradient.nngp, plain.nngp)
    np.testing.assert_array_equal(with_gradient.ntk, plain.ntk)
