"""The numerical path (tanh, sigmoid, softplus, callables) at every variance.

The reference is scipy's adaptive quadrature of the Gaussian integral itself,
written here independently of the package: E[g(u) h(v)] with u = a x,
v = b(ρ x + s y), x, y ~ N(0, 1), s = sqrt(1 − ρ²), integrated over
[-12, 12]² as nested ``integrate.quad`` calls with breakpoints where the
integrand has its features (x = 0 for g, y = −ρx/s for h, and geometric
sequences of breakpoints around them down to the features' widths 1/a and
1/(b s), so that QUADPACK sees them at every variance), epsrel = 1e-13.
The reference's own error is below 1e-13 relative: at variance 1e8 and
ρ = 0.999999 it agrees to 2e-16 with a separate computation splitting
tanh = sgn + (tanh − sgn) into a closed form and localised integrals.
Errors are measured relative to the natural scale sqrt(E[g(u)²] E[h(v)²])
(Cauchy–Schwarz), which also bounds the series' truncation error.

Accuracy asserted (and stated in the docs):
* k and kdot: 1e-10 relative (the Hermite series' bound per layer,
  QUADRATURE_TOLERANCE; the nested rules are good to 1e-12), for smooth
  activations and for callables with kinks at 0 alike;
* tangents (analytic gradients): 1e-9 relative for smooth activations,
  1e-7 for kinked callables, against Richardson-extrapolated central
  differences (see _finite_difference for the step and tolerance).
"""

import math
import warnings

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit

from sklearn_ntk import NTK, NNGP, NTKClassifier
from sklearn_ntk._activation_interface import correlation, snapped_inverse_sqrt
from sklearn_ntk._activations import get_activation
from sklearn_ntk._numerical_activations import QUADRATURE_TOLERANCE

_PHI0 = 1.0 / math.sqrt(2.0 * math.pi)
_LIMIT = 12.0


def _swish(u):
    return u * expit(u)


def _relu_squared(u):
    return np.maximum(u, 0.0) ** 2


def _relu(u):
    return np.maximum(u, 0.0)


#: activation parameter -> (σ, σ') written out for the reference.
ACTIVATIONS = {
    "tanh": (np.tanh, lambda u: 1.0 - np.tanh(u) ** 2),
    "sigmoid": (expit, lambda u: expit(u) * (1.0 - expit(u))),
    "softplus": (lambda u: np.logaddexp(0.0, u), expit),
    "swish": (_swish, lambda u: expit(u) * (1.0 + u * (1.0 - expit(u)))),
    "relu_squared": (_relu_squared, lambda u: 2.0 * np.maximum(u, 0.0)),
    "relu": (_relu, lambda u: np.where(u > 0, 1.0, 0.0)),
}
CALLABLES = {"swish": _swish, "relu_squared": _relu_squared, "relu": _relu}
VARIANCES = [1e-6, 1e-2, 1.0, 35.0, 150.0, 1e3, 1e5, 1e8]
CORRELATIONS = [0.3, -0.9, 0.999999, -0.999999, 1.0, -1.0]


def _activation(name):
    return get_activation(CALLABLES.get(name, name))


def _points(centre, finest):
    """Breakpoints at centre and centre ± finest · 4^j inside (-12, 12)."""
    points, width = [centre], finest
    while width < _LIMIT:
        points += [centre - width, centre + width]
        width *= 4.0
    return sorted(p for p in points if -_LIMIT < p < _LIMIT)


def _quad(function, points):
    # QUADPACK warns where rounding (1e-16 of the integrand) stops it short
    # of epsrel = 1e-13: the result is then accurate to rounding.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        value, _ = integrate.quad(function, -_LIMIT, _LIMIT, points=points,
                                  limit=4000, epsabs=1e-17, epsrel=1e-13)
    return value


def _reference(g, h, q11, q22, rho):
    """E[g(u) h(v)] by nested adaptive quadrature (see the module docstring)."""
    a, b = math.sqrt(q11), math.sqrt(q22)
    s = math.sqrt(max((1.0 - rho) * (1.0 + rho), 0.0))
    density = lambda t: _PHI0 * math.exp(-0.5 * t * t)  # noqa: E731
    if s == 0.0:
        return _quad(lambda x: density(x) * g(a * x) * h(rho * b * x),
                     _points(0.0, 0.25 / max(a, b, 1.0)))

    def inner(x):
        centre = -rho * x / s
        return _quad(lambda y: density(y) * h(b * (rho * x + s * y)),
                     _points(centre, 0.25 / max(b * s, 1.0)))

    return _quad(lambda x: density(x) * g(a * x) * inner(x),
                 _points(0.0, 0.25 * min(1.0 / max(a, 1.0), max(s, 1e-8))))


def _reference_moment(f, q):
    """E[f(u)²], u ~ N(0, q), by adaptive quadrature.

    At q = 0 the limit q → 0+: the mean of f(0+)² and f(0-)² (relu' jumps).
    """
    if q == 0:
        return 0.5 * (f(1e-300) ** 2 + f(-1e-300) ** 2)
    a = math.sqrt(q)
    return _quad(lambda x: _PHI0 * math.exp(-0.5 * x * x) * f(a * x) ** 2,
                 _points(0.0, 0.25 / max(a, 1.0)))


def _dual(activation, q11, q22, q12):
    rows, cols = activation.prepare([np.array([q11]), np.array([q22])])
    k, kdot = activation.dual(rows, cols, np.array([[q12]]))
    return k[0, 0], kdot[0, 0]


def _used_correlation(q11, q22, q12):
    """The correlation dual() sees: the package snaps ρ by 8 ulps.

    Near ±1 at large variance the duals' condition number in ρ is
    ~1/(1 − |ρ|) (1e6 at ρ = 0.999999), so a shift of 8 ulps there moves
    kdot by 1e-9: the reference is taken at the same ρ.
    """
    rho = correlation(np.array([[q12]]), snapped_inverse_sqrt(np.array([q11])),
                      snapped_inverse_sqrt(np.array([q22])))
    return float(rho[0, 0])


def _check_duals(name, cases):
    """Assert k, kdot within QUADRATURE_TOLERANCE of the reference."""
    activation = _activation(name)
    g, slope = ACTIVATIONS[name]
    for q11, q22, rho in cases:
        q12 = rho * math.sqrt(q11 * q22)
        k, kdot = _dual(activation, q11, q22, q12)
        rho = _used_correlation(q11, q22, q12)
        scale_k = math.sqrt(_reference_moment(g, q11) * _reference_moment(g, q22))
        scale_kdot = math.sqrt(_reference_moment(slope, q11)
                               * _reference_moment(slope, q22))
        error_k = abs(k - _reference(g, g, q11, q22, rho)) / scale_k
        error_kdot = abs(kdot - _reference(slope, slope, q11, q22, rho)) / scale_kdot
        assert error_k <= QUADRATURE_TOLERANCE, (name, q11, q22, rho, error_k)
        assert error_kdot <= QUADRATURE_TOLERANCE, (name, q11, q22, rho, error_kdot)


@pytest.mark.parametrize(
    "name, cases",
    [
        # The series (unit variance), and the nested rules beyond its reach.
        ("tanh", [(1.0, 1.0, 0.3), (1e5, 1e5, 0.999999)]),
        ("sigmoid", [(150.0, 150.0, -0.999999)]),
        ("softplus", [(1e8, 1e8, 0.3), (35.0, 35.0, -1.0)]),
        ("swish", [(1e-2, 1e5, 0.999999)]),
        ("relu_squared", [(1.0, 1.0, 0.999999)]),
        ("relu", [(1.0, 2.0, -0.9), (1e3, 1e3, 1.0)]),
    ],
)
def test_duals_match_adaptive_quadrature(name, cases):
    _check_duals(name, cases)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_duals_match_adaptive_quadrature_at_every_variance(name):
    cases = [(q, q, rho) for q in VARIANCES for rho in CORRELATIONS]
    # Unequal variances, from one end of the range to the other.
    cases += [(1e-6, 1.0, 0.7), (1.0, 1e8, -0.999999), (1e-2, 1e5, 0.999)]
    _check_duals(name, cases)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_diagonal_duals_match_adaptive_quadrature(name):
    activation = _activation(name)
    g, slope = ACTIVATIONS[name]
    q = np.array(VARIANCES + [0.0])
    k, kdot = activation.dual_diag(q)
    for index, variance in enumerate(q):
        expected = (_reference_moment(g, variance), _reference_moment(slope, variance))
        np.testing.assert_allclose((k[index], kdot[index]), expected, rtol=1e-12,
                                   atol=1e-30)


def _finite_difference(function, step):
    """Richardson-extrapolated central difference of function at 0.

    The step h is relative (the directions are scaled to the variances):
    with h = 1e-4 the extrapolation (4 D(h/2) − D(h)) / 3 has truncation
    error O(h⁴) ≈ 1e-16 and rounding error ε/h, where ε, the noise of the
    values, is 1e-12 within one method and up to the tolerance 1e-10 where
    a perturbation moves an entry between the series and the nested rules:
    1e-6 at most, the tolerance the tests allow.
    """
    def central(h):
        return (function(h) - function(-h)) / (2.0 * h)

    return (4.0 * central(step / 2.0) - central(step)) / 3.0


TANGENT_CASES = [
    (0.9, 1.4, 0.4), (1.3, 0.7, -0.999999), (1e-2, 3e-2, 0.7), (140.0, 160.0, 0.99),
    (1e5, 1.2e5, 0.99995), (1e8, 0.8e8, -0.5), (1e-6, 1e-6, 0.3),
]


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_tangents_match_finite_differences(name):
    activation = _activation(name)
    kinked = name in ("relu", "relu_squared")
    tolerance = 1e-7 if kinked else 1e-9
    rng = np.random.default_rng(0)
    for q11, q22, rho in TANGENT_CASES:
        q11, q22 = np.array([q11]), np.array([q22])
        root = math.sqrt(q11[0] * q22[0])
        cov = np.array([[rho * root]])
        # Directions that keep |ρ| < 1: dρ stays within (1 − |ρ|) per unit step.
        d11 = rng.normal(size=(2, 1)) * q11
        d22 = rng.normal(size=(2, 1)) * q22
        d12 = (cov * (d11[:, :, None] / (2 * q11) + d22[:, None, :] / (2 * q22))
               + root * (1.0 - abs(rho)) * rng.uniform(-0.5, 0.5, size=(2, 1, 1)))
        rows, cols = activation.prepare([q11, q22], eval_gradient=True)
        dk, dkdot = activation.dual_tangents(rows, cols, cov, d11, d22, d12)
        diagonal = [activation.dual_diag(q) for q in (q11, q22)]
        scale_k = math.sqrt(diagonal[0][0][0] * diagonal[1][0][0])
        scale_kdot = math.sqrt(diagonal[0][1][0] * diagonal[1][1][0])
        for direction in range(2):
            def values(h):
                r, c = activation.prepare([q11 + h * d11[direction],
                                           q22 + h * d22[direction]])
                k, kdot = activation.dual(r, c, cov + h * d12[direction])
                return np.array([k[0, 0], kdot[0, 0]])

            expected = _finite_difference(values, 1e-4)
            assert abs(dk[direction, 0, 0] - expected[0]) <= tolerance * scale_k + (
                1e-6 * scale_k), (name, q11, rho)
            assert abs(dkdot[direction, 0, 0] - expected[1]) <= (
                tolerance * scale_kdot + 1e-6 * scale_kdot), (name, q11, rho)


def _curvatures(name):
    """σ'' and σ''' of the smooth activations, written out for the reference."""
    s = expit
    p = lambda u: s(u) * (1.0 - s(u))  # noqa: E731  (the sigmoid's slope)
    t = np.tanh
    return {
        "tanh": (lambda u: -2.0 * t(u) * (1.0 - t(u) ** 2),
                 lambda u: (1.0 - t(u) ** 2) * (6.0 * t(u) ** 2 - 2.0)),
        "sigmoid": (lambda u: p(u) * (1.0 - 2.0 * s(u)),
                    lambda u: p(u) * (1.0 - 6.0 * p(u))),
        "softplus": (p, lambda u: p(u) * (1.0 - 2.0 * s(u))),
        "swish": (lambda u: p(u) * (2.0 + u * (1.0 - 2.0 * s(u))),
                  lambda u: p(u) * (1.0 - 2.0 * s(u)) * (3.0 + u * (1.0 - 2.0 * s(u)))
                  - 2.0 * u * p(u) ** 2),
    }[name]


def _check_tangents(name, cases):
    """Tangents against Price's theorem evaluated by adaptive quadrature.

    dk = E[σ''σ] dq11/2 + E[σσ''] dq22/2 + E[σ'σ'] dq12, and dkdot alike
    with σ', σ''' and E[σ''σ''] (an independent formula: the package uses
    Stein's lemma instead).  Errors relative to the size of the terms.
    """
    activation = _activation(name)
    g, slope = ACTIVATIONS[name]
    curvature, third = _curvatures(name)
    rng = np.random.default_rng(0)
    for q11, q22, rho in cases:
        root = math.sqrt(q11 * q22)
        cov = np.array([[rho * root]])
        rho = _used_correlation(q11, q22, cov[0, 0])
        d11 = rng.normal(size=(2, 1)) * q11
        d22 = rng.normal(size=(2, 1)) * q22
        d12 = rng.normal(size=(2, 1, 1)) * root
        rows, cols = activation.prepare([np.array([q11]), np.array([q22])],
                                        eval_gradient=True)
        dk, dkdot = activation.dual_tangents(rows, cols, cov, d11, d22, d12)
        expectation = lambda f, h: _reference(f, h, q11, q22, rho)  # noqa: E731
        rates_k = (expectation(curvature, g) / 2, expectation(g, curvature) / 2,
                   expectation(slope, slope))
        rates_kdot = (expectation(third, slope) / 2, expectation(slope, third) / 2,
                      expectation(curvature, curvature))
        scale_k = math.sqrt(_reference_moment(g, q11) * _reference_moment(g, q22))
        scale_kdot = math.sqrt(_reference_moment(slope, q11)
                               * _reference_moment(slope, q22))
        for direction in range(2):
            steps = np.array([d11[direction, 0], d22[direction, 0],
                              d12[direction, 0, 0]])
            # Near |ρ| = 1 the rates along q12 grow like 1/sqrt(1 − ρ²): errors
            # are relative to the terms' size, at least the scale times the
            # relative steps.
            size = np.abs(steps) @ np.array([1 / q11, 1 / q22, 1 / root])
            size_k = max(scale_k * size, np.abs(np.multiply(rates_k, steps)).sum())
            size_kdot = max(scale_kdot * size,
                            np.abs(np.multiply(rates_kdot, steps)).sum())
            error_k = abs(dk[direction, 0, 0] - np.dot(rates_k, steps)) / size_k
            error_kdot = abs(dkdot[direction, 0, 0] - np.dot(rates_kdot, steps)) / (
                size_kdot)
            assert error_k <= 1e-9, (name, q11, q22, rho, error_k)
            assert error_kdot <= 1e-9, (name, q11, q22, rho, error_kdot)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "swish"])
def test_tangents_match_price_by_adaptive_quadrature(name):
    _check_tangents(name, [(1.0, 1.5, 0.4), (1e5, 1.2e5, 0.9999)])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "swish"])
def test_tangents_match_price_by_adaptive_quadrature_at_every_variance(name):
    cases = [(q, 1.3 * q, rho) for q in VARIANCES for rho in (0.3, -0.9, 0.999999)]
    _check_tangents(name, cases)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_diagonal_tangents_match_finite_differences(name):
    activation = _activation(name)
    q = np.array([0.0, 1e-6, 1.0, 150.0, 1e8])
    dq = np.array([[1.0, 2e-6, -0.5, 30.0, 1e7], [0.3, -1e-6, 0.7, -40.0, 2e7]])
    k, kdot, dk, dkdot = activation.dual_diag_tangents(q, dq)
    for direction in range(2):
        def values(h):
            return np.array(activation.dual_diag(np.maximum(q + h * dq[direction], 0)))

        # A relative step of 1e-2: the values of a callable carry the noise
        # of its finite-difference σ' (3e-13), so smaller steps would measure
        # noise at q = 1e8.  One-sided at q = 0 (q >= 0): (f(h) − f(0))/h
        # with h = 1e-6, extrapolated (truncation O(h²)).
        forward = [(values(h) - values(0.0)) / h for h in (1e-6, 5e-7)]
        expected = _finite_difference(values, 1e-2)
        expected[:, 0] = 2 * forward[1][:, 0] - forward[0][:, 0]
        # Rounding of the values, 1e-16, over h = 1e-6 at q = 0: 1e-9 absolute.
        np.testing.assert_allclose(dk[direction], expected[0], rtol=1e-6,
                                   atol=1e-8 * np.abs(k).max())
        np.testing.assert_allclose(dkdot[direction], expected[1], rtol=1e-6,
                                   atol=1e-8 * np.abs(kdot).max())


def test_kinks_at_zero_are_detected_in_callables():
    assert get_activation(_relu)._derivatives.jumps == pytest.approx((1.0, 0.0))
    assert get_activation(_relu_squared)._derivatives.jumps == pytest.approx((0.0, 2.0))
    assert get_activation(_swish)._derivatives.jumps == (0.0, 0.0)


@pytest.mark.parametrize(
    "function, variance",
    [(lambda u: np.abs(u - 0.5), 1.3), (lambda u: np.clip(u, 0.0, 6.0), 30.0),
     (np.sin, 1e6)],
)
def test_unresolved_structure_raises_instead_of_a_wrong_value(function, variance):
    # Kinks away from 0, or oscillations far finer than the pre-activations'
    # spread: the rules and their refinement disagree, and we say so.
    activation = get_activation(function)
    with pytest.raises(ValueError, match="did not converge"):
        activation.prepare([np.array([variance])])


def _unscaled_digits(n):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


@pytest.mark.parametrize("kernel_class", [NTK, NNGP])
def test_kernel_of_large_inputs_agrees_with_its_diagonal(kernel_class):
    # Digits as loaded: pre-activation variances 34 to 92 in the first layer,
    # beyond the series for tanh (it would need ~6000 terms).  K(X) has
    # diag(X) on its diagonal exactly; K(X, X) computes the diagonal through
    # the duals at ρ = 1, which agree with it to the per-layer tolerance
    # compounded over the depth: (L − 1) · 1e-10 · sqrt(K_ii K_jj) here.
    X, _ = _unscaled_digits(150)
    kernel = kernel_class(depth=5, activation="tanh")
    K = kernel(X)
    np.testing.assert_array_equal(np.diag(K), kernel.diag(X))
    scale = np.sqrt(np.outer(np.diag(K), np.diag(K)))
    assert np.abs(kernel(X, X) - K).max() <= 4 * QUADRATURE_TOLERANCE * scale.max()


def _reference_kernel(X, depth, beta, weight_std, sigma, slope):
    """The NTK recursion with every dual by scipy's adaptive quadrature."""
    n = X.shape[0]
    cov = weight_std**2 * X @ X.T / X.shape[1] + beta**2
    ntk = cov.copy()
    for _ in range(depth - 1):
        new_cov, new_slope = np.empty_like(cov), np.empty_like(cov)
        for i in range(n):
            for j in range(i, n):
                root = math.sqrt(cov[i, i] * cov[j, j])
                rho = min(max(cov[i, j] / root, -1.0), 1.0)
                new_cov[i, j] = new_cov[j, i] = _reference(
                    sigma, sigma, cov[i, i], cov[j, j], rho)
                new_slope[i, j] = new_slope[j, i] = _reference(
                    slope, slope, cov[i, i], cov[j, j], rho)
        cov = weight_std**2 * new_cov + beta**2
        ntk = ntk * weight_std**2 * new_slope + cov
    return ntk


@pytest.mark.slow
def test_deep_ntk_matches_the_recursion_by_adaptive_quadrature():
    # Per layer the duals are within 1e-10 relative; through 4 nonlinear
    # layers the kernel stays within 1e-9 relative (the recursion is a
    # contraction for tanh at σ_w = 1.5, so errors add up, not multiply).
    X, _ = _unscaled_digits(3)
    X = X[:, :16] / 4.0  # variances ~10-40: beyond the series for the pairs
    expected = _reference_kernel(X, 5, 0.1, 1.5, *ACTIVATIONS["tanh"])
    actual = NTK(depth=5, activation="tanh", weight_std=1.5)(X)
    scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    assert np.abs(actual - expected).max() <= 1e-9 * scale.max()


def test_tanh_classifier_fits_digits_as_loaded():
    X, y = _unscaled_digits(300)
    classifier = NTKClassifier(activation="tanh").fit(X[:200], y[:200])
    assert classifier.score(X[200:], y[200:]) > 0.8


@pytest.mark.slow
def test_tanh_classifier_fits_all_digits_as_loaded():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    classifier = NTKClassifier(activation="tanh").fit(X[:1500], y[:1500])
    assert classifier.score(X[1500:], y[1500:]) > 0.9


def test_gaussian_process_fits_tanh_kernel_with_wide_weight_bounds():
    from sklearn.gaussian_process import GaussianProcessRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(40)
    kernel = NTK(depth=3, activation="tanh", weight_std_bounds=(0.1, 10))
    gpr = GaussianProcessRegressor(kernel, alpha=1e-2, normalize_y=True).fit(X, y)
    assert np.isfinite(gpr.log_marginal_likelihood_value_)
    assert gpr.score(X, y) > 0.9


@pytest.mark.parametrize("activation", [_relu, _relu_squared])
def test_kinked_callables_give_kernels_and_gradients(activation):
    X = np.random.default_rng(1).standard_normal((6, 3))
    kernel = NTK(depth=3, activation=activation, beta=0.3)
    K, gradient = kernel(X, eval_gradient=True)
    if activation is _relu:
        np.testing.assert_allclose(K, NTK(depth=3, beta=0.3)(X), rtol=1e-10)
    step = 1e-5
    for index in range(2):
        theta = kernel.theta.copy()
        theta[index] += step
        plus = kernel.clone_with_theta(theta)(X)
        theta[index] -= 2 * step
        minus = kernel.clone_with_theta(theta)(X)
        np.testing.assert_allclose(gradient[..., index], (plus - minus) / (2 * step),
                                   rtol=1e-6, atol=1e-8 * np.abs(K).max())
