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


import numpy as np
import pytest

from sklearn_ntk._activation_interface import Activation
from sklearn_ntk._activations import ACTIVATIONS, get_activation
from sklearn_ntk._recursion import (
    KERNEL_CHOICES,
    TILE_SIZE,
    diagonal,
    kernel_matrices,
    layer_tangents,
    layer_tangents_in_place,
    layer_values,
    layer_values_in_place,
)

EPS = np.finfo(float).eps


def _kernels(X, Y=None, depth=3, activation="relu", beta=0.1, weight_std=1.0, **kwargs):
    return kernel_matrices(X, Y, depth=depth, activation=activation, beta=beta,
                           weight_std=weight_std, kernel="both", **kwargs)


def test_matches_neural_tangents(neural_tangents_kernel, condition):
    reference = neural_tangents_kernel

    def kernel(X, Y):
        result = _kernels(X, Y, depth=reference["depth"],
                          activation=reference["activation"],
                          beta=reference["beta"], weight_std=reference["weight_std"])
        return getattr(result, reference["kind"])

    X, Y = reference["X"], reference["Y"]
    # Both sides round a d-term first layer and ~16 elementwise passes a layer
    # (float64 on both sides), amplified by the kernel's condition.
    rtol = 2 * (X.shape[1] + 16 * reference["depth"]) * EPS * condition(kernel, X, Y)
    np.testing.assert_allclose(kernel(X, Y), reference["K"], rtol=rtol)


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


@pytest.mark.parametrize(
    "activation",
    ["relu"] + [pytest.param(name, marks=pytest.mark.slow)
                for name in ("erf", "tanh", "gelu")],
)
def test_monte_carlo_finite_networks_converge_to_the_limit(activation, empirical_kernels):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((4, 5))
    depth, width, n_networks = 3, 2048, 12
    widths = [X.shape[1]] + [width] * (depth - 1) + [1]
    sigma = get_activation(activation)

    def random_network_kernels():
        weights = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(depth)]
        biases = [rng.standard_normal(widths[i + 1]) for i in range(depth)]
        _, nngp, ntk = empirical_kernels(X, weights, biases, sigma, 0.2, 1.3)
        return nngp, ntk

    samples = [random_network_kernels() for _ in range(n_networks)]
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


def test_zero_inputs_without_bias_follow_neural_tangents(neural_tangents_reference):
    # The reference X[3] is the zero vector; the beta = 0.1 keys cover it with
    # a bias, and without one the NNGP row of a relu network vanishes.
    X = neural_tangents_reference["X"]
    result = _kernels(X, depth=3, beta=0.0)
    assert np.all(result.nngp[3] == 0.0)
    assert np.all(np.isfinite(result.ntk))


def test_scaled_duplicates_and_antipodes_are_exact():
    x = np.array([[0.3, -1.2, 0.5]])
    X = np.vstack([x, 3 * x, -x])
    # Relu with beta = 0 is positively homogeneous: Σ(x, 3x) = 3 Σ(x, x).
    # Rounding only: 3x (1), the 3-term products (3) and ~16 passes a layer
    # on each side; at θ = 0 a layer is a product of square roots (condition 1).
    rtol = 2 * (1 + 3 + 16 * 3) * EPS
    result = _kernels(X, depth=3, beta=0.0)
    np.testing.assert_allclose(result.nngp[0, 1], 3 * result.nngp[0, 0], rtol=rtol)
    np.testing.assert_allclose(result.ntk[0, 1], 3 * result.ntk[0, 0], rtol=rtol)

    # Antipodes have correlation exactly -1 at the first layer, where relu's
    # arc-cosine kernels vanish: E[relu(u) relu(-u)] = 0 and the slope term
    # (π - θ)/2π = 0.  So one hidden layer gives exactly 0 for both kernels.
    one_hidden = _kernels(X, depth=2, beta=0.0)
    assert one_hidden.nngp[0, 2] == 0.0 and one_hidden.ntk[0, 2] == 0.0
    # A second hidden layer sees correlation 0: Σ³(x, -x) = σ_w² Σ²(x, x)/2π
    # against Σ³(x, x) = σ_w² Σ²(x, x)/2, a ratio of 1/π; and Θ³(x, -x) =
    # Θ²(x, -x) Σ̇³ + Σ³ = Σ³(x, -x).
    np.testing.assert_allclose(result.nngp[0, 2], result.nngp[0, 0] / np.pi, rtol=rtol)
    np.testing.assert_allclose(result.ntk[0, 2], result.nngp[0, 2], rtol=rtol)


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


@pytest.mark.parametrize("shape", [(7,), (5, 6)])
def test_in_place_layer_equals_the_plain_layer_bit_for_bit(shape):
    # The tiles use the in-place twins; they must be the same arithmetic in
    # the same order as the plain functions the diagonal uses (so that a
    # tile's diagonal equals diagonal()), whatever the buffers.
    rng = np.random.default_rng(4)
    k, kdot, ntk = (rng.uniform(0.1, 2.0, shape) for _ in range(3))
    dk, dkdot, d_ntk = (rng.normal(size=(2,) + shape) for _ in range(3))
    bias_var = 0.3

    expected_tangents = layer_tangents(k, kdot, dk, dkdot, ntk, d_ntk, bias_var)
    expected_values = layer_values(k, kdot, ntk, bias_var)
    buffers = [a.copy() for a in (k, kdot, dk, dkdot, ntk, d_ntk)]
    k_, kdot_, dk_, dkdot_, ntk_, d_ntk_ = buffers
    tangents = layer_tangents_in_place(k_, kdot_, dk_, dkdot_, ntk_, d_ntk_, bias_var)
    values = layer_values_in_place(k_, kdot_, ntk_, bias_var)
    for actual, expected in zip(tangents + values, expected_tangents + expected_values):
        np.testing.assert_array_equal(actual, expected)
    # The results live in the buffers the docstrings name.
    assert values[0] is k_ and values[1] is ntk_
    assert tangents[0] is dk_ and tangents[1] is d_ntk_
    # Without Θ (kernel="nngp"), Σ and dΣ are the same numbers.
    k_, kdot_, dk_, dkdot_ = (a.copy() for a in (k, kdot, dk, dkdot))
    d_nngp, d_ntk_none = layer_tangents_in_place(k_, kdot_, dk_, dkdot_, None, None,
                                                 bias_var)
    nngp, ntk_none = layer_values_in_place(k_, kdot_, None, bias_var)
    assert ntk_none is None and d_ntk_none is None
    np.testing.assert_array_equal(d_nngp, expected_tangents[0])
    np.testing.assert_array_equal(nngp, expected_values[0])


def test_plain_layer_is_the_recursion_of_the_paper():
    # One relu layer written out with numpy: Σ' = σ_w² E + β², Σ̇ = σ_w² Ė,
    # Θ' = Θ Σ̇ + Σ', with the arc-cosine expectations of Cho & Saul (2009)
    # at unit variances, E = (sin θ + (π − θ) cos θ)/2π and Ė = (π − θ)/2π.
    # ~10 roundings on each side.
    theta = np.array([0.3, 1.2, 2.5])
    weight_var, bias_var, ntk = 1.7, 0.04, np.array([1.1, 0.9, 0.5])
    expectation = (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
    slope_expectation = (np.pi - theta) / (2 * np.pi)
    nngp, new_ntk = layer_values(weight_var * expectation,
                                 weight_var * slope_expectation, ntk, bias_var)
    relu = get_activation("relu")
    rows, cols = relu.prepare([np.ones(3), np.ones(3)])
    k, kdot = relu.dual(rows, cols, np.diag(np.cos(theta)), scale=weight_var)
    np.testing.assert_allclose(np.diag(k) + bias_var, nngp, rtol=10 * EPS)
    np.testing.assert_allclose(ntk * np.diag(kdot) + nngp, new_ntk, rtol=10 * EPS)
    np.testing.assert_allclose(nngp, weight_var * expectation + bias_var, rtol=2 * EPS)
    np.testing.assert_allclose(
        new_ntk, ntk * weight_var * slope_expectation + nngp, rtol=4 * EPS)


@pytest.mark.parametrize("kernel", ["NTK", "gp", "", None, ["ntk"]])
def test_unknown_kernel_is_an_error_naming_the_choices(kernel):
    X = np.ones((2, 3))
    with pytest.raises(ValueError, match="kernel must be one of") as error:
        kernel_matrices(X, depth=2, activation="relu", beta=0.1, weight_std=1.0,
                        kernel=kernel)
    assert all(repr(choice) in str(error.value) for choice in KERNEL_CHOICES)


class _Square(Activation):
    """σ(x) = x², written as a user of the interface would add it.

    E[u²v²] = q11 q22 + 2 q12² and E[(2u)(2v)] = 4 q12 (Isserlis' theorem);
    it computes in new arrays (workspace_size 0).
    """

    name = "square"

    def function(self, x):
        return np.square(x)

    def derivative(self, x):
        return 2.0 * np.asarray(x)

    def _dual(self, rows, cols, cov, scale, workspace):
        k = np.outer(rows.variance, cols.variance) + 2.0 * cov**2
        return scale * k, scale * 4.0 * cov

    def _dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        dk = (d_rows[:, :, None] * cols.variance[None, None, :]
              + rows.variance[None, :, None] * d_cols[:, None, :] + 4.0 * cov * d_cov)
        return dk, 4.0 * d_cov

    def _dual_diag(self, q):
        return 3.0 * q**2, 4.0 * q

    def _dual_diag_tangents(self, q, dq):
        return 3.0 * q**2, 4.0 * q, 6.0 * q * dq, 4.0 * dq


def test_an_activation_added_through_the_interface_runs_the_recursion():
    # The recursion written out here with numpy for σ = x² (see _Square),
    # against kernel_matrices with the new activation and several tiles
    # (tile_size 4 < n): ~16 roundings a layer in values of condition ~3.
    # Gradients by central differences in log β and log σ_w: the kernels
    # are polynomials in e^θ of degree at most 2 (2^depth - 1) = 14, so the
    # truncation h² |f'''|/6 is at most 14³ h²/6 of the scale, plus
    # rounding of ~64 eps of the scale divided by h.
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(9, 3)), rng.normal(size=(6, 3))
    beta, weight_std, depth = 0.3, 0.8, 3

    def reference(beta, weight_std):
        w2, b2 = weight_std**2, beta**2
        nngp = w2 * X @ Y.T / X.shape[1] + b2
        qx = w2 * np.mean(X * X, axis=1) + b2
        qy = w2 * np.mean(Y * Y, axis=1) + b2
        ntk = nngp.copy()
        for _ in range(depth - 1):
            slope = w2 * 4.0 * nngp
            nngp = w2 * (np.outer(qx, qy) + 2.0 * nngp**2) + b2
            ntk = ntk * slope + nngp
            qx, qy = w2 * 3.0 * qx**2 + b2, w2 * 3.0 * qy**2 + b2
        return nngp, ntk

    result = kernel_matrices(X, Y, depth=depth, activation=_Square(), beta=beta,
                             weight_std=weight_std, kernel="both", eval_gradient=True,
                             tile_size=4)
    expected = reference(beta, weight_std)
    np.testing.assert_allclose(result.nngp, expected[0], rtol=3 * 16 * depth * EPS)
    np.testing.assert_allclose(result.ntk, expected[1], rtol=3 * 16 * depth * EPS)
    step = 1e-5
    for direction, (db, dw) in enumerate([(1, 0), (0, 1)]):
        plus = reference(beta * np.exp(db * step), weight_std * np.exp(dw * step))
        minus = reference(beta * np.exp(-db * step), weight_std * np.exp(-dw * step))
        for values, up, down in zip(
                (result.nngp_gradient, result.ntk_gradient), plus, minus):
            scale = np.abs(values[..., direction]).max()
            tolerance = (14**3 * step**2 / 6 + 64 * EPS / step) * scale
            np.testing.assert_allclose(values[..., direction], (up - down) / (2 * step),
                                       rtol=0, atol=tolerance)


def test_only_piecewise_linear_activations_declare_it():
    # finite.py applies activations declaring piecewise_linear in place from
    # their slopes: they must be exactly a·min(x, 0) + b·max(x, 0).
    x = np.linspace(-3.0, 3.0, 13)
    for name in ACTIVATIONS:
        activation = get_activation(name)
        if activation.piecewise_linear:
            expected = (activation.negative_slope * np.minimum(x, 0.0)
                        + activation.positive_slope * np.maximum(x, 0.0))
            np.testing.assert_array_equal(activation.function(x), expected)
    declared = {n for n in ACTIVATIONS if get_activation(n).piecewise_linear}
    assert declared == {"relu", "leaky_relu", "abs"}
