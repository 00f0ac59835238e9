"""Never a silent NaN or inf: every input scale gives correct results or a clear error.

Every public computation is run on inputs scaled by 1e-200 ... 1e200, for every
activation of ``ACTIVATIONS`` and a callable, with warnings as errors.  Each
cell must either raise a ValueError that names the cause (overflow, underflow,
or the numerical path's accuracy limit) and says to standardise the inputs, or
return finite results that are correct by a reference independent of the
package code:

* closed-form kernels: the recursion evaluated in mpmath at 40 + 4·|log10 s|
  digits, with the closed forms of the user guide ("Closed forms of the dual
  activations") written out here again (the
  package evaluates them in other, rescaled forms); gradients by mpmath's
  numerical differentiation at that precision;
* positively homogeneous activations (relu, leaky_relu, abs, identity) with
  β = 0: K(sX) = s² K(X) (exact for s = 2^k, to rounding for s = 10^k), and
  the corresponding identities of the estimators, samplers and networks;
* NNGPRegressor at t = ∞: scikit-learn's GaussianProcessRegressor;
* other estimators: the formulas of the user guide ("Training for a time t",
  "Uncertainty") evaluated here with numpy on the
  package's kernels (checked above), normalised by the largest diagonal entry;
* samplers: their forward passes written out here from their public
  weights; finite networks: the conftest's ``empirical_kernels`` of their
  weights;
* always: symmetry, |K_ij| <= sqrt(K_ii K_jj), positive semi-definiteness,
  ``diag`` equal to the matrix's diagonal.

The quadrature activations (tanh, sigmoid, softplus, callables) may still
raise their accuracy error at large variance; their cells accept that.

Tolerances are multiples of eps = 2.2e-16 times a condition number computed
from the data (stated where used), or the stated accuracy of a reference.
"""

import math
import re
import warnings

import mpmath
import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor

from sklearn_ntk import (
    NNGP,
    NTK,
    NNGPRegressor,
    NNGPSampler,
    NTKClassifier,
    NTKRegressor,
    NTKSampler,
    SingularKernelWarning,
)
from sklearn_ntk._activations import ACTIVATIONS, get_activation
from sklearn_ntk._recursion import diagonal
from sklearn_ntk.finite import Network

EPS = np.finfo(float).eps
SCALES = [1e-200, 1e-100, 1e-20, 1e-8, 1.0, 1e8, 1e20, 1e100, 1e200]
HOMOGENEOUS = ["relu", "leaky_relu", "abs", "identity"]
SLOPES = {"relu": (0.0, 1.0), "leaky_relu": (0.01, 1.0), "abs": (-1.0, 1.0)}
CLOSED_FORMS = HOMOGENEOUS + ["erf", "gelu", "sin", "cos"]
QUADRATURE = ["tanh", "sigmoid", "softplus", "callable"]
ALL_ACTIVATIONS = list(ACTIVATIONS) + ["callable"]
assert sorted(CLOSED_FORMS + QUADRATURE[:3]) == sorted(ACTIVATIONS)
DEPTH = 3


def _isru(x):
    """A user callable (the numerical path with finite-difference derivatives).

    x / sqrt(1 + x²): smooth, so that its Hermite series converges.
    """
    return x / np.sqrt(1.0 + x * x)


def _activation(name):
    return _isru if name == "callable" else name


def _cell(activation, scale):
    """pytest.param of a matrix cell; some are slow (CI runs them all).

    Quadrature cells at large scale are slow (the numerical path works hard
    before its error); the fast loop keeps the extreme scales, the middle
    ones and unit scale for every activation, and leaves 1e±8 and 1e±20 to
    the full suite.
    """
    slow = (activation in QUADRATURE and 1e8 <= scale < 1e200) or scale in (
        1e-20, 1e-8, 1e8, 1e20)
    return pytest.param(activation, scale, marks=pytest.mark.slow if slow else ())


CELLS = [_cell(name, scale) for name in ALL_ACTIVATIONS for scale in SCALES]


def _data(n=6, n_features=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, n_features))


# ---------------------------------------------------------------------------
# "Correct or a clear error", with warnings as errors.

_CAUSES = (r"overflow|underflow|not representable|did not reach relative accuracy"
           r"|did not converge")


def _outcome(compute):
    """compute(), or None if it raised the clear error; warnings are errors.

    Except SingularKernelWarning: a ridge α negligible next to a kernel of
    size s² (identity's rank-n_features kernel at s = 1e8) is the user's
    problem, reported as such, and the pseudo-inverse is still correct.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", SingularKernelWarning)
        try:
            return compute()
        except ValueError as error:
            message = str(error)
            assert re.search(_CAUSES, message), message
            assert re.search(r"standardi[sz]e the inputs", message, re.I), message
            return None


def _must_succeed(activation, scale, beta):
    """Cells where the true results are representable and must be returned.

    Closed forms at 1e-100 ... 1e100 (first-layer variances 1e-200 ... 1e200),
    and at 1e-200 when β > 0 keeps the variances normal (σ(0) != 0 does for
    cos, whose kernel is then about 1).
    """
    if activation not in CLOSED_FORMS:
        return False
    if scale == 1e200:
        return False
    if scale == 1e-200:
        return beta > 0 or activation == "cos"
    return True


# ---------------------------------------------------------------------------
# The recursion in mpmath: an independent high-precision reference.


def _mp_dual(name, q11, q22, q12):
    """E[σ(u)σ(v)], E[σ'(u)σ'(v)] by the closed forms of the user guide."""
    s = mpmath.sqrt(q11 * q22)
    rho = mpmath.mpf(0) if s == 0 else max(min(q12 / s, 1), -1)
    q12 = rho * s
    if name in SLOPES:
        a, b = (mpmath.mpf(slope) for slope in SLOPES[name])
        c, big_a = (a - b) ** 2 / (2 * mpmath.pi), (a * a + b * b) / 2
        theta = mpmath.acos(rho)
        kdot = big_a - c * theta
        return c * s * mpmath.sin(theta) + kdot * q12, kdot
    if name == "identity":
        return q12, mpmath.mpf(1)
    if name == "erf":
        product = (1 + 2 * q11) * (1 + 2 * q22)
        return (2 / mpmath.pi * mpmath.asin(2 * q12 / mpmath.sqrt(product)),
                4 / mpmath.pi / mpmath.sqrt(product - 4 * q12 * q12))
    if name == "gelu":
        p, big_p = q11 * q22, (1 + q11) * (1 + q22)
        delta2 = big_p - q12 * q12
        delta, psi = mpmath.sqrt(delta2), mpmath.asin(q12 / mpmath.sqrt(big_p))
        k = q12 / 4 + ((q12**2 + p * delta2) / (big_p * delta) + q12 * psi) / (
            2 * mpmath.pi)
        kdot = mpmath.mpf(1) / 4 + psi / (2 * mpmath.pi) + q12 / (
            2 * mpmath.pi * delta) * (1 / delta2 + (1 - p) / big_p + 1)
        return k, kdot
    m = (q11 + q22) / 2
    hyperbolic = (mpmath.sinh(q12), mpmath.cosh(q12))
    if name == "cos":
        hyperbolic = hyperbolic[::-1]
    return mpmath.exp(-m) * hyperbolic[0], mpmath.exp(-m) * hyperbolic[1]


def _mp_pair(name, x, y, beta, weight_std):
    """(Σᴸ(x, y), Θᴸ(x, y)) for mpf inputs, by the recursion of the user guide."""
    w2, b2 = weight_std**2, beta**2
    n0 = len(x)

    def inner(u, v):
        return w2 * mpmath.fsum(a * b for a, b in zip(u, v)) / n0 + b2

    q = {"xx": inner(x, x), "yy": inner(y, y), "xy": inner(x, y)}
    theta = dict(q)
    for _ in range(DEPTH - 1):
        pairs = {"xx": ("xx", "xx"), "yy": ("yy", "yy"), "xy": ("xx", "yy")}
        new = {}
        for key, (left, right) in pairs.items():
            k, kdot = _mp_dual(name, q[left], q[right], q[key])
            new[key] = w2 * k + b2
            theta[key] = theta[key] * w2 * kdot + new[key]
        q = new
    return q["xy"], theta["xy"]


def _digits(*scales):
    exponent = max(abs(math.log10(s)) for s in scales if s > 0)
    return int(40 + 4 * exponent)


def _mp_kernel(name, X, kind, beta, weight_std, scale, pairs=None):
    """The kernel matrix of the float inputs X, exactly (to 40 digits)."""
    with mpmath.workdps(_digits(scale, weight_std, beta or 1.0)):
        rows = [[mpmath.mpf(float(v)) for v in row] for row in X]
        b, w = mpmath.mpf(float(beta)), mpmath.mpf(float(weight_std))
        index = 0 if kind == "nngp" else 1
        n = len(rows)
        K = np.empty((n, n))
        for i in range(n):
            for j in range(i, n):
                K[i, j] = K[j, i] = float(_mp_pair(name, rows[i], rows[j], b, w)[index])
        return K


def _mp_gradient(name, X, kind, beta, weight_std, scale, pairs):
    """d/d log β (if β > 0) and d/d log σ_w of chosen entries, in mpmath."""
    index = 0 if kind == "nngp" else 1
    with mpmath.workdps(_digits(scale, weight_std, beta or 1.0)):
        rows = [[mpmath.mpf(float(v)) for v in row] for row in X]
        log_b = mpmath.log(mpmath.mpf(float(beta))) if beta else None
        log_w = mpmath.log(mpmath.mpf(float(weight_std)))
        result = []
        for i, j in pairs:
            def entry(lb, lw):
                b = mpmath.exp(lb) if beta else mpmath.mpf(0)
                return _mp_pair(name, rows[i], rows[j], b, mpmath.exp(lw))[index]

            derivatives = []
            if beta:
                derivatives.append(mpmath.diff(entry, (log_b, log_w), (1, 0)))
            derivatives.append(mpmath.diff(lambda lw: entry(log_b, lw), log_w))
            result.append([float(d) for d in derivatives])
        return np.array(result)


def _mp_correlation_condition(name, X, beta, weight_std, scale):
    """How much errors of order eps in ρ grow, over distinct points and layers.

    The snapping of ρ by 1 + 8 eps (and its rounding) is amplified by
    1/sin θ in arccos and by 1/(1 − ρ²) in erf's and gelu's 1 − ρ²: the
    condition number is 1/(1 − ρ²) for the largest |ρ|.  Within 16 eps of
    ±1, ρ is snapped to ±1, which moves the duals by at most
    sqrt(2 (1 − |ρ|)) (the arccos near 1): that, in units of 64 eps.
    """
    worst = 1.0
    with mpmath.workdps(_digits(scale, weight_std, beta or 1.0)):
        rows = [[mpmath.mpf(float(v)) for v in row] for row in X]
        w2, b2 = mpmath.mpf(float(weight_std)) ** 2, mpmath.mpf(float(beta)) ** 2
        n0 = len(rows[0])
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                def inner(u, v):
                    return w2 * mpmath.fsum(a * b for a, b in zip(u, v)) / n0 + b2

                q11, q22 = inner(rows[i], rows[i]), inner(rows[j], rows[j])
                q12 = inner(rows[i], rows[j])
                for _ in range(DEPTH - 1):
                    if q11 > 0 and q22 > 0:
                        gap = 1 - abs(q12) / mpmath.sqrt(q11 * q22)
                        if gap <= 16 * EPS:
                            condition = float(mpmath.sqrt(2 * gap)) / (64 * EPS)
                        else:
                            condition = float(1 / (gap * (2 - gap)))
                        worst = max(worst, condition)
                    q11, q22, q12 = (
                        w2 * _mp_dual(name, q11, q11, q11)[0] + b2,
                        w2 * _mp_dual(name, q22, q22, q22)[0] + b2,
                        w2 * _mp_dual(name, q11, q22, q12)[0] + b2,
                    )
    return worst


def _kernel_tolerance(condition):
    """Relative to sqrt(K_ii K_jj): 64 eps per layer times the conditioning.

    Each layer's dual is a few roundings (≤ 16 eps) plus the 8-eps snap of ρ,
    amplified by ``condition``; the recursion adds its layers.
    """
    return 64 * DEPTH * EPS * condition


# ---------------------------------------------------------------------------
# Invariants that hold for every kernel.


def _geometric_mean(a, b):
    """sqrt(a_i b_j), the bound of a PSD kernel's entries, without underflow."""
    return np.outer(np.sqrt(a), np.sqrt(b))


def _check_kernel_invariants(K, K_diag, tolerance):
    assert np.all(np.isfinite(K)) and np.all(np.isfinite(K_diag))
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_array_equal(np.diag(K), K_diag)
    bound = _geometric_mean(K_diag, K_diag)
    assert np.all(np.abs(K) <= bound * (1 + tolerance) + np.finfo(float).tiny)
    scale = np.max(K_diag)
    if scale > 0:
        eigenvalues = np.linalg.eigvalsh(K / scale)
        assert eigenvalues.min() >= -tolerance * len(K)


KINDS = {"ntk": NTK, "nngp": NNGP}


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("beta", [0.0, 0.1])
@pytest.mark.parametrize("activation, scale", CELLS)
def test_kernels_at_every_scale(activation, scale, beta, kind):
    X = _data() * scale
    Y = _data(4, seed=1) * scale
    kernel = KINDS[kind](depth=DEPTH, activation=_activation(activation), beta=beta)

    def compute():
        K, gradient = kernel(X, eval_gradient=True)
        return K, gradient, kernel.diag(X), kernel(X, Y), kernel.diag(Y)

    result = _outcome(compute)
    if result is None:
        assert not _must_succeed(activation, scale, beta)
        return
    K, gradient, K_diag, K_xy, Y_diag = result
    assert np.all(np.isfinite(gradient)) and np.all(np.isfinite(K_xy))
    assert gradient.shape == K.shape + ((2,) if beta else (1,))
    if activation not in CLOSED_FORMS:
        # Quadrature: invariants at its stated accuracy (1e-9 relative), and
        # at tiny scales the kernel of zero inputs, which differs by O(s²).
        _check_kernel_invariants(K, K_diag, 1e-8)
        if scale <= 1e-8 and beta > 0:
            K_zero = kernel(np.zeros_like(X))
            np.testing.assert_allclose(K, K_zero, rtol=1e-8)
        return
    condition = _mp_correlation_condition(activation, X, beta, 1.0, scale)
    tolerance = _kernel_tolerance(condition)
    _check_kernel_invariants(K, K_diag, tolerance)
    reference = _mp_kernel(activation, X, kind, beta, 1.0, scale)
    bound = _geometric_mean(np.diag(reference), np.diag(reference))
    assert np.all(np.abs(K - reference) <= tolerance * bound), (
        np.max(np.abs(K - reference) / bound))
    # K(X, Y) against K of the stacked points.
    stacked = _mp_kernel(activation, np.vstack([X, Y]), kind, beta, 1.0, scale)
    cross = stacked[: len(X), len(X):]
    bound = _geometric_mean(np.diag(reference), np.diag(stacked)[len(X):])
    assert np.all(np.abs(K_xy - cross) <= tolerance * bound)
    np.testing.assert_allclose(Y_diag, np.diag(stacked)[len(X):], rtol=tolerance)
    # Gradients of a few entries (off-diagonal, diagonal), normwise per
    # hyperparameter against the largest reference entry.
    pairs = [(0, 1), (2, 4), (3, 3)]
    expected = _mp_gradient(activation, X, kind, beta, 1.0, scale, pairs)
    actual = np.array([gradient[i, j] for i, j in pairs])
    diagonal_gradient = getattr(
        diagonal(X, depth=DEPTH, activation=_activation(activation), beta=beta,
                 weight_std=1.0, eval_gradient=True), kind + "_gradient")[-1]
    scale_of_gradient = np.max(np.abs(diagonal_gradient), axis=0)
    scale_of_gradient = scale_of_gradient[-actual.shape[1]:]
    assert np.all(np.abs(actual - expected) <= tolerance * scale_of_gradient), (
        actual, expected)


# ---------------------------------------------------------------------------
# Exact identities and limits.


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("activation", HOMOGENEOUS)
def test_homogeneous_kernels_scale_exactly_by_powers_of_two(activation, kind):
    # K(2^k X; 2^k β) = 4^k K(X; β) bit for bit, gradients included: the
    # recursion runs on X / 2^e and scales back exactly.
    X = _data()
    kernel = KINDS[kind](depth=DEPTH, activation=activation, beta=0.3)
    K, gradient = kernel(X, eval_gradient=True)
    for k in (-450, -200, -70, -30, 30, 70, 200, 500):
        scaled = KINDS[kind](depth=DEPTH, activation=activation,
                             beta=math.ldexp(0.3, k))
        K_k, gradient_k = scaled(np.ldexp(X, k), eval_gradient=True)
        np.testing.assert_array_equal(K_k, np.ldexp(K, 2 * k))
        np.testing.assert_array_equal(gradient_k, np.ldexp(gradient, 2 * k))
        np.testing.assert_array_equal(scaled.diag(np.ldexp(X, k)),
                                      np.ldexp(kernel.diag(X), 2 * k))


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("activation", HOMOGENEOUS)
@pytest.mark.parametrize("scale", [1e-150, 1e-100, 1e-20, 1e8, 1e20, 1e100, 1e150])
def test_homogeneous_kernels_scale_by_s_squared(activation, kind, scale):
    # β = 0: K(sX) = s² K(X).  X·s and s² are rounded (2 eps relative each),
    # which the kernels pass on with the condition number of the test
    # points' correlations (as in _kernel_tolerance).
    X = _data()
    kernel = KINDS[kind](depth=DEPTH, activation=activation, beta=0.0)
    K, gradient = kernel(X, eval_gradient=True)
    K_s, gradient_s = kernel(X * scale, eval_gradient=True)
    condition = _mp_correlation_condition(activation, X, 0.0, 1.0, 1.0)
    tolerance = _kernel_tolerance(condition)
    bound = _geometric_mean(np.diag(K), np.diag(K))
    assert np.all(np.abs(K_s / scale**2 - K) <= tolerance * bound)
    assert np.all(np.abs(gradient_s / scale**2 - gradient)
                  <= tolerance * np.max(np.abs(gradient)))


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
@pytest.mark.parametrize("scale", [1e8, 1e50, 1e100])
def test_gelu_tends_to_relu_at_large_scale(kind, scale):
    # x Φ(x) = relu(x) - |x| Φ(-|x|) differs from relu only where |x| <~ 1,
    # which a N(0, q) pre-activation visits with probability O(q^-1/2).
    # Expanding the closed forms as q -> ∞ (u = 1/(1 + q) -> 0):
    # * off the diagonal (|ρ| < 1) k and kdot differ from relu's by
    #   O(1) and O(1/q): relative O(1/q);
    # * on it, kdot = 1/2 + 1/(4π sqrt(2q)) + O(q^-3/2) (checked in mpmath
    #   below), and Θ(x, x) = Σ_h Σʰ Π_{k>h} Σ̇ᵏ carries that relative
    #   1/(2π sqrt(2 q_k)) for each layer k >= 2.
    # So gelu(sX)/s² -> relu(X), relative to sqrt(K_ii K_jj), within
    # Σ_k 1/(2π sqrt(2 q_k)) (NTK) plus 1/q_min and rounding.
    X = _data()
    relu = KINDS[kind](depth=DEPTH, activation="relu", beta=0.0)(X)
    gelu = KINDS[kind](depth=DEPTH, activation="gelu", beta=0.0)(X * scale)
    variances = diagonal(X * scale, depth=DEPTH, activation="relu", beta=0.0,
                         weight_std=1.0).nngp
    q_min = variances.min(axis=1)
    expansion = sum(1 / (2 * np.pi * np.sqrt(2 * q)) for q in q_min[:-1])
    condition = _mp_correlation_condition("relu", X, 0.0, 1.0, 1.0)
    tolerance = _kernel_tolerance(condition) + 1 / q_min.min()
    if kind == "ntk":
        tolerance += expansion
    bound = _geometric_mean(np.diag(relu), np.diag(relu))
    assert np.all(np.abs(gelu / scale**2 - relu) <= tolerance * bound)
    # And the leading term of kdot on the diagonal, in mpmath.
    gelu_activation = get_activation("gelu")
    with mpmath.workdps(60):
        for q in (1e8, 1e16):
            kdot = _mp_dual("gelu", mpmath.mpf(q), mpmath.mpf(q), mpmath.mpf(q))[1]
            deviation = float((kdot - mpmath.mpf(1) / 2) * mpmath.sqrt(q))
            assert abs(deviation - 1 / (4 * np.pi * np.sqrt(2))) < 1 / q
            np.testing.assert_allclose(gelu_activation.dual_diag(np.array([q]))[1],
                                       float(kdot), rtol=8 * EPS)


@pytest.mark.parametrize("activation", CLOSED_FORMS)
def test_duplicated_points_keep_identical_rows_and_gradients(activation):
    # The tile computes K(x_0, x_1) for x_1 = x_0 by the off-diagonal
    # formulas and diagonal() K(x_0, x_0) by its own: they must agree at
    # every scale, gradients included (snapped correlations have dρ = 0).
    X = _data()
    X[1] = X[0]
    for scale in (1.0, 1e4, 1e8, 1e20, 1e100):
        for beta in (0.0, 0.1):
            K, gradient = NTK(depth=DEPTH, activation=activation, beta=beta)(
                X * scale, eval_gradient=True)
            np.testing.assert_allclose(K[0, 1], K[0, 0], rtol=16 * EPS)
            np.testing.assert_allclose(gradient[0, 1], gradient[0, 0], rtol=0,
                                       atol=16 * EPS * np.max(np.abs(gradient[0, 0])))


def test_underflow_is_an_error_and_true_zeros_stay_zeros():
    # Values below the normal range (2.2e-308) have lost precision: relu at
    # scale 1e-200 without bias has variances ~1e-400.  Zero inputs without
    # bias have the exact kernel 0, which is returned.
    X = _data()
    for kernel in (NTK(beta=0.0), NNGP(beta=0.0, activation="erf")):
        with pytest.raises(ValueError, match="underflow.*[Ss]tandardise the inputs"):
            kernel(X * 1e-200)
        with pytest.raises(ValueError, match="underflow"):
            kernel.diag(X * 1e-200)
        assert np.all(kernel(np.zeros_like(X)) == 0.0)
    # With a bias the inputs' contribution is negligible and nothing is lost.
    np.testing.assert_array_equal(NTK()(X * 1e-200), NTK()(np.zeros_like(X)))


@pytest.mark.parametrize("activation", ["sin", "cos"])
def test_trigonometric_kernels_stay_bounded_by_one(activation):
    X = _data()
    X[1] = X[0]
    for scale in (1e20, 1e100, 1e150):
        K = NNGP(depth=2, activation=activation, beta=0.0)(X * scale)
        assert np.all(np.abs(K) <= 1.0)
        # Distinct points decorrelate completely, duplicates stay identical.
        assert K[0, 1] == K[0, 0] == K[1, 1]
        np.testing.assert_allclose(np.diag(K), 0.5, rtol=EPS)
        off = ~np.eye(len(X), dtype=bool)
        off[0, 1] = off[1, 0] = False
        assert np.all(K[off] == 0.0)


def test_overflow_names_the_input_scale_and_the_fix():
    X = _data() * 1e200
    with pytest.raises(ValueError) as error:
        NTK()(X)
    message = str(error.value)
    assert "not representable in float64" in message
    assert "largest input norm is" in message and "e+200" in message
    assert "pre-activation variance" in message and "e+400" in message
    assert "Standardise the inputs" in message


# ---------------------------------------------------------------------------
# Estimators.

ALPHA = 1e-3


def _regression_data():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((12, 3))
    return X, np.sin(X[:, 0]) + X[:, 1], rng.standard_normal((5, 3))


def _condition(eigenvalues):
    """Condition number of K + αI, as far as the solve sees it.

    Eigenvalues below N·eps·λ_max are rounding (a rank-deficient kernel,
    e.g. identity's, with a negligible ridge): the pseudo-inverse drops them.
    """
    largest = np.max(np.abs(eigenvalues))
    return largest / max(np.min(eigenvalues), len(eigenvalues) * EPS * largest)


def _reference_prediction(kind, activation, beta, X, y, X_test, alpha, t):
    """Mean and covariance of the user guide, in numpy, on K / m (m: max diagonal)."""
    params = dict(depth=DEPTH, activation=activation, beta=beta)
    K_train = KINDS[kind](**params)(X)
    K_cross = KINDS[kind](**params)(X_test, X)
    prior_train, prior_cross = NNGP(**params)(X), NNGP(**params)(X_test, X)
    prior_test = NNGP(**params)(X_test)
    m = np.max(np.diag(K_train))
    eigenvalues, V = np.linalg.eigh(K_train / m + (alpha / m) * np.eye(len(X)))
    c = t / len(X) * m
    with np.errstate(over="ignore"):
        phi = -np.expm1(-c * eigenvalues) / eigenvalues if np.isfinite(c) else (
            1 / eigenvalues)
    A = (K_cross / m) @ V @ np.diag(phi) @ V.T
    mean = A @ y
    if kind == "nngp":
        filter_2c = (-np.expm1(-2 * c * eigenvalues) / eigenvalues if np.isfinite(c)
                     else 1 / eigenvalues)
        B = (K_cross / m) @ V
        cov = prior_test - m * (B * filter_2c) @ B.T
    else:
        cov = prior_test + m * (A @ (prior_train / m) @ A.T - A @ (prior_cross.T / m)
                                - (prior_cross / m) @ A.T)
    return mean, cov, np.max(np.diag(prior_test)), _condition(eigenvalues)


@pytest.mark.parametrize("t", [np.inf, 5.0])
@pytest.mark.parametrize("estimator", [NTKRegressor, NNGPRegressor])
@pytest.mark.parametrize("activation, scale", CELLS)
def test_regressors_at_every_scale(activation, scale, estimator, t):
    X, y, X_test = _regression_data()
    homogeneous = activation in HOMOGENEOUS
    beta = 0.0 if homogeneous else 0.1
    # Homogeneous cells keep the problem of unit scale (see below): the
    # ridge and the flow's time scale follow the kernel, α s² and η / s².
    # (Both kept within float64 at s = 1e±200, where the kernels fail first.)
    log_square = min(max(2 * math.log10(scale), -300), 300)
    alpha = ALPHA * 10.0**log_square if homogeneous else ALPHA
    learning_rate = 10.0**-log_square if homogeneous else 1.0
    model = estimator(depth=DEPTH, activation=_activation(activation), beta=beta,
                      alpha=alpha, t=t, learning_rate=learning_rate)

    def compute():
        model.fit(X * scale, y)
        mean = model.predict(X_test * scale)
        mean_std, std = model.predict(X_test * scale, return_std=True)
        mean_cov, cov = model.predict(X_test * scale, return_cov=True)
        return mean, mean_std, mean_cov, std, cov

    result = _outcome(compute)
    if result is None:
        assert not _must_succeed(activation, scale, beta)
        return
    mean, mean_std, mean_cov, std, cov = result
    for values in result:
        assert np.all(np.isfinite(values))
    np.testing.assert_allclose(mean_std, mean, rtol=1e-12)
    np.testing.assert_allclose(mean_cov, mean, rtol=1e-12)
    np.testing.assert_array_equal(cov, cov.T)
    if homogeneous:
        # The flow on K(sX) = s² K(X) with ridge α s² and learning rate η/s²
        # is the flow on K(X): same mean, std × s, covariance × s².
        # Tolerance: 64 eps times the condition number of K + αI (the linear
        # algebra) times that of the kernels (their rounding).
        unit = estimator(depth=DEPTH, activation=activation, beta=0.0,
                         alpha=ALPHA, t=t).fit(X, y)
        unit_mean, unit_cov = unit.predict(X_test, return_cov=True)
        K = KINDS[model._kind](depth=DEPTH, activation=activation, beta=0.0)(X)
        eigenvalues = np.linalg.eigvalsh(K + ALPHA * np.eye(len(X)))
        condition = _condition(eigenvalues)
        tolerance = 64 * EPS * condition * _mp_correlation_condition(
            activation, X, 0.0, 1.0, 1.0)
        np.testing.assert_allclose(mean, unit_mean, rtol=0,
                                   atol=tolerance * np.max(np.abs(unit_mean)))
        unit_scale = np.max(np.diag(NNGP(depth=DEPTH, activation=activation,
                                         beta=0.0)(X_test)))
        np.testing.assert_allclose(cov / scale**2, unit_cov, rtol=0,
                                   atol=tolerance * unit_scale)
        # The variance (std², computed on its own path) is the diagonal.
        np.testing.assert_allclose((std / scale)**2, np.diag(unit_cov), rtol=0,
                                   atol=tolerance * unit_scale)
        return
    expected_mean, expected_cov, prior_scale, condition = _reference_prediction(
        model._kind, _activation(activation), beta, X * scale, y, X_test * scale,
        ALPHA, t)
    # The reference shares the kernels (checked above) but not the linear
    # algebra: 64 eps times the condition number of K + αI.
    tolerance = 64 * EPS * condition
    np.testing.assert_allclose(mean, expected_mean, rtol=0,
                               atol=tolerance * np.max(np.abs(y)) * len(y))
    np.testing.assert_allclose(cov, expected_cov, rtol=0,
                               atol=tolerance * prior_scale * len(y))
    np.testing.assert_allclose(std**2, np.diag(cov), rtol=0,
                               atol=tolerance * prior_scale * len(y))
    if estimator is NNGPRegressor and np.isinf(t):
        # At t = ∞ the ensemble is the Gaussian process posterior.
        gpr = GaussianProcessRegressor(
            kernel=NNGP(depth=DEPTH, activation=_activation(activation), beta=beta),
            alpha=ALPHA, optimizer=None).fit(X * scale, y)
        gpr_mean, gpr_cov = gpr.predict(X_test * scale, return_cov=True)
        np.testing.assert_allclose(mean, gpr_mean, rtol=0,
                                   atol=tolerance * np.max(np.abs(y)) * len(y))
        np.testing.assert_allclose(cov, gpr_cov, rtol=0,
                                   atol=tolerance * prior_scale * len(y))


@pytest.mark.parametrize("activation, scale", CELLS)
def test_classifier_at_every_scale(activation, scale):
    X, y, X_test = _regression_data()
    labels = np.where(y > np.median(y), "up", "down")
    beta = 0.0 if activation in HOMOGENEOUS else 0.1
    classifier = NTKClassifier(depth=DEPTH, activation=_activation(activation),
                               beta=beta, alpha=ALPHA)

    def compute():
        classifier.fit(X * scale, labels)
        return classifier.decision_function(X_test * scale), classifier.predict(
            X_test * scale)

    result = _outcome(compute)
    if result is None:
        assert not _must_succeed(activation, scale, beta)
        return
    scores, predicted = result
    assert np.all(np.isfinite(scores))
    np.testing.assert_array_equal(predicted, np.where(scores > 0, "up", "down"))
    # The scores are the regression of the ±1-encoded labels.
    regressor = NTKRegressor(depth=DEPTH, activation=_activation(activation),
                             beta=beta, alpha=ALPHA).fit(
        X * scale, np.where(labels == "up", 1.0, -1.0))
    np.testing.assert_allclose(scores, regressor.predict(X_test * scale),
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Samplers and finite networks: their forward passes written out here.

SAMPLERS = {"nngp": NNGPSampler, "ntk": NTKSampler}


def _reference_features(sampler, X, activation, beta):
    """Depth-2 features from the sampler's public weights (float64)."""
    sigma = get_activation(_activation(activation))
    W, b = sampler.random_weights_[0], sampler.random_biases_[0]
    n0, width = W.shape
    pre = X @ W / np.sqrt(n0) + beta * b
    hidden = np.hstack([sigma.function(pre) / np.sqrt(width),
                        np.full((len(X), 1), beta)])
    if isinstance(sampler, NNGPSampler):
        return hidden
    inputs = np.hstack([X / np.sqrt(n0), np.full((len(X), 1), beta)])
    delta = sigma.derivative(pre) * sampler.readout_weights_ / np.sqrt(width)
    left, right = sampler.sketch_weights_[0]
    sketch = (inputs @ left) * (delta @ right) / np.sqrt(left.shape[1])
    return np.hstack([sketch, hidden])


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
@pytest.mark.parametrize("activation, scale", CELLS)
def test_samplers_at_every_scale(activation, scale, kind):
    X = _data(8, 4)
    beta = 0.0 if activation in HOMOGENEOUS else 0.1
    sampler = SAMPLERS[kind](depth=2, activation=_activation(activation), beta=beta,
                             n_components=24, random_state=0).fit(X)
    features = _outcome(lambda: sampler.transform(X * scale))
    if features is None:
        assert scale >= 1e154 or scale <= 1e-154 or activation not in CLOSED_FORMS
        return
    assert np.all(np.isfinite(features))
    # Same operations in another order: rounding, relative to the largest
    # feature, of a few products and sums of n_features + width terms.
    tolerance = 64 * EPS * (X.shape[1] + features.shape[1])
    if activation in HOMOGENEOUS:
        expected = sampler.transform(X) * scale
    else:
        expected = _reference_features(sampler, X * scale, activation, beta)
    np.testing.assert_allclose(features, expected, rtol=0,
                               atol=tolerance * np.max(np.abs(expected)))
    # float32 output: either the rounded features or a clear error (for
    # inputs that float32 can hold).
    if 1e-30 <= scale <= 1e30:
        X32 = (X * scale).astype(np.float32)
        features32 = _outcome(lambda: sampler.transform(X32))
        if features32 is not None:
            assert features32.dtype == np.float32 and np.all(np.isfinite(features32))


@pytest.mark.parametrize("activation, scale", CELLS)
def test_finite_networks_at_every_scale(activation, scale, empirical_kernels):
    X = _data(6, 4)
    beta = 0.0 if activation in HOMOGENEOUS else 0.1
    net = Network(4, depth=DEPTH, width=16, activation=_activation(activation),
                  beta=beta, random_state=0)
    result = _outcome(lambda: (net.predict(X * scale), net.nngp(X * scale),
                               net.ntk(X * scale)))
    if result is None:
        assert scale >= 1e154 or activation not in CLOSED_FORMS
        return
    output, nngp, ntk = result
    for values in result:
        assert np.all(np.isfinite(values))
    # Sums of up to width·(n_features + 1) products, in another order.
    tolerance = 64 * EPS * net.n_parameters
    if activation in HOMOGENEOUS:
        expected = (net.predict(X) * scale, net.nngp(X) * scale**2,
                    net.ntk(X) * scale**2)
    else:
        expected = empirical_kernels(X * scale, net.weights, net.biases,
                                     get_activation(_activation(activation)),
                                     net.beta, net.weight_std)
    for actual, reference in zip(result, expected):
        np.testing.assert_allclose(actual, reference, rtol=0,
                                   atol=tolerance * np.max(np.abs(reference)))
    # A float32 network: correct (to its rounding) or a clear error.
    net32 = Network(4, depth=DEPTH, width=16, activation=_activation(activation),
                    beta=beta, random_state=0, dtype=np.float32)
    result32 = _outcome(lambda: (net32.predict(X * scale), net32.ntk(X * scale)))
    if result32 is not None:
        for values in result32:
            assert np.all(np.isfinite(values))
