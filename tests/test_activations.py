"""The dual kernels E[σ(u)σ(v)] and E[σ'(u)σ'(v)] of every activation.

Three independent routes must agree:

* the closed forms (relu, leaky_relu, abs, erf, identity, gelu, sin, cos);
* the numerical path (Hermite/Mehler series with Gauss–Hermite coefficients)
  applied to the same σ, whose truncation error is at most
  QUADRATURE_TOLERANCE (1e-9) times E[σ²] at the largest variance;
* scipy's adaptive 2-D integration of the Gaussian integral itself (nested
  ``quad``, absolute and relative tolerances of 1e-12 and 1e-13 requested).

Tolerances are these stated accuracies, plus rounding (eps-sized) where the
closed forms are compared with each other.
"""

import re
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate

from sklearn_ntk._activations import (
    ACTIVATIONS,
    CLOSED_FORM_ACTIVATIONS,
    get_activation,
)
from sklearn_ntk._numerical_activations import (
    QUADRATURE_TOLERANCE,
    QuadratureActivation,
)

EPS = np.finfo(float).eps

# (q11, q22, q12): moderate, strongly correlated, anti-correlated, unequal
# variances, large variance, and independent pre-activations.
COVARIANCES = [
    (1.0, 1.0, 0.3),
    (0.5, 0.7, 0.59),
    (1.2, 0.8, -0.9),
    (0.3, 2.0, 0.2),
    (3.0, 2.5, 2.0),
    (0.8, 0.6, 0.0),
]
SMOOTH_CLOSED_FORMS = ["erf", "identity", "gelu", "sin", "cos"]
KINKED_CLOSED_FORMS = ["relu", "leaky_relu", "abs"]
NUMERICAL = ["tanh", "sigmoid", "softplus"]


def _dual(activation, q11, q22, q12):
    activation = get_activation(activation)
    rows, cols = activation.prepare([np.array([q11]), np.array([q22])])
    k, kdot = activation.dual(rows, cols, np.array([[q12]]))
    return k[0, 0], kdot[0, 0]


def _integrate_2d(g, h, q11, q22, q12):
    """E[g(u) h(v)] by nested adaptive scipy quadrature over z1, z2 ~ N(0, 1).

    u = a z1 and v = b z1 + c z2; the breakpoints u = 0 and v = 0 tell QUADPACK
    where relu-like kinks and steps sit, so it converges to ~1e-12 there too.
    """
    a = np.sqrt(q11)
    b = q12 / a
    c = np.sqrt(max(q22 - b * b, 0.0))
    bound = 10.0

    def inner(z1):
        weight = np.exp(-0.5 * z1 * z1) / np.sqrt(2.0 * np.pi)
        if c * c <= 4 * EPS * q22:  # q22 - b² is rounding: perfect correlation
            return weight * g(a * z1) * h(b * z1)
        kink = -b * z1 / c
        points = [kink] if abs(kink) < bound else None
        value, _ = integrate.quad(
            lambda z2: h(b * z1 + c * z2) * np.exp(-0.5 * z2 * z2),
            -bound, bound, points=points, epsabs=1e-13, epsrel=1e-12, limit=200,
        )
        return weight * g(a * z1) * value / np.sqrt(2.0 * np.pi)

    value, _ = integrate.quad(inner, -bound, bound, points=[0.0], epsabs=1e-12,
                              epsrel=1e-12, limit=200)
    return value


def _as_quadrature(name):
    """The numerical path applied to a closed-form activation's σ and σ'."""
    closed = get_activation(name)

    def derivatives(x, order):
        return closed.function(x) if order == 0 else closed.derivative(x)

    return QuadratureActivation(name, derivatives)


@pytest.mark.parametrize("name", SMOOTH_CLOSED_FORMS)
@pytest.mark.parametrize("q11, q22, q12", COVARIANCES)
def test_smooth_closed_forms_match_hermite_quadrature(name, q11, q22, q12):
    expected = _dual(_as_quadrature(name), q11, q22, q12)
    actual = _dual(name, q11, q22, q12)
    # The series' stated truncation bound: QUADRATURE_TOLERANCE times E[σ²]
    # (for k) and E[σ'²] (for kdot) at the larger variance.
    scales = get_activation(name).dual_diag(np.array([max(q11, q22)]))
    for value, reference, scale in zip(actual, expected, scales):
        np.testing.assert_allclose(value, reference, rtol=0,
                                   atol=QUADRATURE_TOLERANCE * scale[0])


@pytest.mark.parametrize(
    "name",
    [name if name not in ("abs", "leaky_relu")  # slow: 0.6-2 s a case; relu stays
     else pytest.param(name, marks=pytest.mark.slow)
     for name in SMOOTH_CLOSED_FORMS + KINKED_CLOSED_FORMS + NUMERICAL],
)
@pytest.mark.parametrize("q11, q22, q12", COVARIANCES[:4])
def test_duals_match_scipy_2d_integration(name, q11, q22, q12):
    activation = get_activation(name)
    expected = (
        _integrate_2d(activation.function, activation.function, q11, q22, q12),
        _integrate_2d(activation.derivative, activation.derivative, q11, q22, q12),
    )
    # QUADPACK's requested accuracy: outer 1e-12 + 1e-12 |I|, inner 1e-13 +
    # 1e-12 |inner| under E|g|; E|g h| <= sqrt(E[g²] E[h²]) (Cauchy–Schwarz).
    # Plus the numerical path's truncation bound; closed forms only round.
    moments = np.sqrt(activation.dual_diag(np.array([q11, q22])))  # sqrt E[g²]
    for value, reference, (left, right), numerical_scale in zip(
        _dual(name, q11, q22, q12), expected, moments,
        activation.dual_diag(np.array([max(q11, q22)])),
    ):
        atol = 1e-12 * (1 + abs(reference) + left * right) + 1e-13 * left
        if name in NUMERICAL:
            atol += QUADRATURE_TOLERANCE * numerical_scale[0]
        np.testing.assert_allclose(value, reference, rtol=0, atol=atol)


@pytest.mark.parametrize("name", KINKED_CLOSED_FORMS)
@pytest.mark.parametrize("q11, q22, q12", COVARIANCES[:4] + [(1.0, 1.0, 1.0 - 1e-9)])
def test_kinked_closed_forms_match_the_numerical_path(name, q11, q22, q12):
    # On relu's kink the Hermite coefficients decay like k^(-3/4): the series
    # alone cannot reach its tolerance, and the pairs it cannot handle (here
    # the nearly perfectly correlated one) go through the nested rules with
    # a breakpoint at the kink.
    expected = _dual(name, q11, q22, q12)
    actual = _dual(_as_quadrature(name), q11, q22, q12)
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_diagonal_duals_are_the_limit_of_perfect_correlation(name):
    activation = get_activation(name)
    q = np.array([0.3, 1.0, 2.5])
    k, kdot = activation.dual_diag(q)
    for index, variance in enumerate(q):
        expected = (
            _integrate_2d(activation.function, activation.function, variance, variance,
                          variance),
            _integrate_2d(activation.derivative, activation.derivative, variance,
                          variance, variance),
        )
        # c = 0: the outer quad alone (1e-12 + 1e-12 |I| requested); the
        # numerical path's moments stop once node doubling changes them by
        # < 1e-13 (1 + |value|); closed forms only round.
        np.testing.assert_allclose((k[index], kdot[index]), expected,
                                   rtol=1e-12 + 1e-13, atol=1e-12 + 1e-13)


def _second_moments(name, q):
    """E[σ⁽ᵐ⁾(√q Z)²] for m = 0..3, from derivatives written out here.

    Gauss–Hermite with 200 nodes is exact to rounding for these entire
    functions at q <= 2.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    x = np.sqrt(q) * nodes
    if name == "tanh":
        t = np.tanh(x)
        families = [t, 1 - t**2, -2 * t * (1 - t**2), (1 - t**2) * (6 * t**2 - 2)]
    else:
        s = 1 / (1 + np.exp(-x))
        d = s * (1 - s)
        sigmoid = [s, d, d * (1 - 2 * s), d * (1 - 6 * d)]
        families = sigmoid if name == "sigmoid" else [np.logaddexp(0, x)] + sigmoid[:3]
    return [float(weights @ family**2 / weights.sum()) for family in families]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_jacobian_vector_products_match_central_differences(name):
    activation = get_activation(name)
    q11, q22 = np.array([0.9, 1.4]), np.array([0.7, 1.1, 2.0])
    cov = np.array([[0.4, -0.2, 0.7], [0.1, 0.9, -1.2]])
    rng = np.random.default_rng(0)
    d11, d22, d12 = rng.normal(size=(2, 2)), rng.normal(size=(2, 3)), rng.normal(
        size=(2, 2, 3)
    )
    rows, cols = activation.prepare([q11, q22], eval_gradient=True)
    dk, dkdot = activation.dual_tangents(rows, cols, cov, d11, d22, d12)
    k, kdot = activation.dual(rows, cols, cov)
    step = 1e-6
    # Central differences: the truncation, h²/6 times a third derivative,
    # is < 1e-12 and negligible; rounding, ~16 roundings of each dual
    # (condition <= 2 for |ρ| <= 0.73 here), is divided by 2h.  The numerical
    # path adds, on each side, its series' truncation bound for the families
    # up to the third derivative (Price's theorem), scaled by the direction.
    tolerances = [16 * EPS * 2 * np.abs(values).max() / step for values in (k, kdot)]
    if isinstance(activation, QuadratureActivation):
        q_max = max(q11.max(), q22.max())
        largest = max(_second_moments(name, q_max))
        size = np.abs(d11).max() + np.abs(d22).max() + np.abs(d12).max()
        tolerances = [t + 2 * QUADRATURE_TOLERANCE * largest * size
                      for t in tolerances]
    for direction in range(2):
        shifted = []
        for sign in (1.0, -1.0):
            a = q11 + sign * step * d11[direction]
            b = q22 + sign * step * d22[direction]
            r, c = activation.prepare([a, b])
            shifted.append(activation.dual(r, c, cov + sign * step * d12[direction]))
        fd_k = (shifted[0][0] - shifted[1][0]) / (2 * step)
        fd_kdot = (shifted[0][1] - shifted[1][1]) / (2 * step)
        np.testing.assert_allclose(dk[direction], fd_k, rtol=0, atol=tolerances[0])
        np.testing.assert_allclose(dkdot[direction], fd_kdot, rtol=0,
                                   atol=tolerances[1])


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_diagonal_tangents_match_central_differences(name):
    activation = get_activation(name)
    q = np.array([0.2, 1.0, 3.0])
    dq = np.array([[1.0, -0.5, 2.0], [0.3, 0.7, -1.0]])
    k, kdot, dk, dkdot = activation.dual_diag_tangents(q, dq)
    step = 1e-6
    # As above: ~16 roundings of each side (condition <= 2) over 2h; the
    # numerical path's moments stop at a change < 1e-13 (1 + |value|), for
    # the values (divided by 2h) and for the derivatives themselves.
    tolerances = []
    for values, derivatives in ((k, dk), (kdot, dkdot)):
        tolerance = 16 * EPS * 2 * np.abs(values).max() / step
        if isinstance(activation, QuadratureActivation):
            tolerance += 1e-13 * ((1 + np.abs(values).max()) / step
                                  + 1 + np.abs(derivatives).max())
        tolerances.append(tolerance)
    for direction in range(2):
        plus = activation.dual_diag(q + step * dq[direction])
        minus = activation.dual_diag(q - step * dq[direction])
        np.testing.assert_allclose(dk[direction], (plus[0] - minus[0]) / (2 * step),
                                   rtol=0, atol=tolerances[0])
        np.testing.assert_allclose(dkdot[direction], (plus[1] - minus[1]) / (2 * step),
                                   rtol=0, atol=tolerances[1])


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_duals_in_a_workspace_equal_duals_in_new_arrays(name):
    # The recursion hands dual() its tile buffers: k must come back in cov's
    # buffer and kdot in the workspace, equal to an allocating call; without
    # a workspace, cov must be left alone.
    activation = get_activation(name)
    rng = np.random.default_rng(1)
    q11, q22 = rng.uniform(0.5, 2.0, 5), rng.uniform(0.5, 2.0, 4)
    cov = rng.uniform(-0.4, 0.4, (5, 4)) * np.sqrt(np.outer(q11, q22))
    rows, cols = activation.prepare([q11, q22])
    original = cov.copy()
    k, kdot = activation.dual(rows, cols, cov, scale=1.7)
    np.testing.assert_array_equal(cov, original)
    workspace = [np.full_like(cov, np.nan) for _ in range(activation.workspace_size)]
    if not workspace:
        return
    k_in_place, kdot_in_place = activation.dual(rows, cols, cov, scale=1.7,
                                                workspace=workspace)
    assert k_in_place is cov
    assert any(kdot_in_place is buffer for buffer in workspace)
    # The same operations into other buffers: the same numbers.
    np.testing.assert_array_equal(k_in_place, k)
    np.testing.assert_array_equal(kdot_in_place, kdot)


def test_hermite_series_length_adapts_to_the_variance():
    tanh = get_activation("tanh")
    short = tanh.prepare([np.array([0.5])])[0].coefficients.shape[-1]
    long = tanh.prepare([np.array([4.0])])[0].coefficients.shape[-1]
    # The strip of analyticity of tanh(sqrt(q) z) narrows like 1/sqrt(q).
    assert long > 3 * short


def test_extreme_variance_is_computed_not_refused():
    # tanh at variance 1e4 needs ~7e5 Hermite terms: the series stops at
    # _MAX_TERMS and the pairs it cannot reach go through the nested rules.
    k, kdot = _dual("tanh", 1e4, 1e4, 1e4 * 0.9999)
    assert np.isfinite(k) and np.isfinite(kdot)
    assert 0.98 < k < 1.0 and 0.0 < kdot < 0.1


def test_callable_activation_matches_its_named_twin():
    rows_named = _dual("tanh", 1.0, 0.5, 0.3)
    rows_callable = _dual(np.tanh, 1.0, 0.5, 0.3)
    # The same series length, so k sums the same coefficients of np.tanh;
    # kdot's σ' comes from finite-difference stencils accurate to 1e-12
    # relative (the package's stated accuracy), in both of its factors.
    lengths = [get_activation(a).prepare([np.array([1.0])])[0].coefficients.shape[-1]
               for a in ("tanh", np.tanh)]
    assert lengths[0] == lengths[1]
    np.testing.assert_array_equal(rows_callable[0], rows_named[0])
    np.testing.assert_allclose(rows_callable[1], rows_named[1], rtol=2e-12)


def test_zero_variance_uses_a_right_angle():
    # A zero input with beta = 0: the correlation is undefined and counted
    # as 0 (angle π/2), as in neural-tangents; no NaN.
    k, kdot = _dual("relu", 0.0, 1.0, 0.0)
    assert k == 0.0 and kdot == 0.25


def test_correlations_rounding_past_one_are_clipped():
    k, kdot = _dual("relu", 1.0, 1.0, 1.0 + 1e-15)
    assert np.isfinite(k) and np.isfinite(kdot)
    # Clipped to θ = 0 exactly: ~16 roundings of a well-conditioned dual.
    np.testing.assert_allclose((k, kdot), (0.5, 0.5), rtol=16 * EPS)


def test_correlations_within_eight_ulps_of_one_snap_to_one():
    # Snapping absorbs rounding (|rho| = 1 - 7 eps gives exactly theta = 0),
    # but nothing farther out: 1 - 12 eps keeps its angle of ~sqrt(24 eps).
    eps = np.finfo(float).eps
    assert _dual("relu", 1.0, 1.0, 1.0 - 7 * eps)[1] == 0.5
    assert _dual("relu", 1.0, 1.0, -1.0 + 7 * eps)[1] == 0.0
    # kdot = 1/2 - θ/(2π), θ = arccos(1 - 12 eps) = sqrt(24 eps) (1 + O(eps));
    # rounding near 1/2 costs ulp(1/2) = 1e-16, far below half of θ/(2π).
    gap = 0.5 - _dual("relu", 1.0, 1.0, 1.0 - 12 * eps)[1]
    assert gap > 0.5 * np.sqrt(24 * eps) / (2 * np.pi)


@pytest.mark.parametrize(
    "activation, error, message",
    [
        ("swish", ValueError, "Unknown activation 'swish'"),
        (3, TypeError, "activation must be a string or a callable"),
        (lambda x: np.log(x), ValueError, "finite values of the same shape"),
        (lambda x: x[0], ValueError, "same shape"),
    ],
)
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_bad_activations_are_named(activation, error, message):
    # The error names the callable; the user's RuntimeWarnings (log of a
    # negative number) do not escape as well.
    with pytest.raises(error, match=message):
        get_activation(activation)


def _listed(path, start, closed_end, end, pattern):
    """The names matching ``pattern`` from ``start`` to ``end`` in a document,
    and those of them before ``closed_end``."""
    text = (Path(__file__).parents[1] / path).read_text(encoding="utf-8")
    segment = text[text.index(start):]
    segment = segment[:segment.index(end)]
    closed = segment[:segment.index(closed_end)]
    return re.findall(pattern, segment), re.findall(pattern, closed)


@pytest.mark.parametrize("path, start, closed_end, end, pattern", [
    ("README.md", "Activations: ", "(closed forms)", "or any vectorised callable",
     r"`(\w+)`"),
    ("docs/user_guide.rst", "The nonlinearity σ.", "have closed-form expectations",
     "or any vectorised callable", r'``"(\w+)"``'),
])
def test_documented_activation_lists_equal_the_registry(path, start, closed_end, end,
                                                        pattern):
    # The docstrings' lists are generated from the registry; these two
    # documents are written by hand and must list the same names, closed
    # forms first, in the registry's order.
    names, closed = _listed(path, start, closed_end, end, pattern)
    assert tuple(names) == ACTIVATIONS
    assert tuple(closed) == CLOSED_FORM_ACTIVATIONS
