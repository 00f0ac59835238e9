"""NTK and NNGP: the values of neural-tangents, and scikit-learn's Kernel contract."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.gaussian_process import GaussianProcessClassifier, GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC, SVR

from sklearn_ntk import NNGP, NTK
from sklearn_ntk._activations import ACTIVATIONS

KERNELS = [NTK, NNGP]
KERNEL_BY_KIND = {"ntk": NTK, "nngp": NNGP}
EPS = np.finfo(float).eps


def test_matches_neural_tangents(neural_tangents_kernel, condition):
    case = neural_tangents_kernel
    kernel = KERNEL_BY_KIND[case["kind"]](
        depth=case["depth"], activation=case["activation"], beta=case["beta"],
        weight_std=case["weight_std"])
    X, Y = case["X"], case["Y"]
    # Both sides (float64) round a d-term first layer and ~16 elementwise
    # passes a layer, amplified by the kernel's condition.
    rtol = 2 * (X.shape[1] + 16 * case["depth"]) * EPS * condition(kernel, X, Y)
    np.testing.assert_allclose(kernel(X, Y), case["K"], rtol=rtol)


def _log_space_finite_differences(kernel, X, step=1e-5):
    theta = kernel.theta
    gradient = np.empty(X.shape[:1] * 2 + theta.shape)
    for index in range(theta.size):
        plus, minus = theta.copy(), theta.copy()
        plus[index] += step
        minus[index] -= step
        gradient[..., index] = (
            kernel.clone_with_theta(plus)(X) - kernel.clone_with_theta(minus)(X)
        ) / (2 * step)
    return gradient


def _central_difference_tolerance(kernel, X, expected, condition, step=1e-5,
                                  activation_error=0.0):
    """Absolute error bound of ``_log_space_finite_differences``.

    Rounding: each evaluation of K rounds a d-term first layer and ~16 passes
    a layer, amplified by K's condition; the difference over 2 step keeps
    that over step.  Truncation: step² / 6 times the third derivative in log
    space, at most (2 depth)³ |K| (K grows like σ_w^(2 depth), β² enters as
    e^(2 log β)).  ``activation_error`` is a relative error of the analytic
    side (a callable's derivatives).
    """
    depth, d = kernel.depth, X.shape[1]
    scale = np.abs(kernel(X)).max()
    rounding = 2 * (d + 16 * depth) * EPS * condition(kernel, X) * scale / step
    truncation = step**2 / 6 * (2 * depth) ** 3 * scale
    return rounding + truncation + activation_error * np.abs(expected).max()


@pytest.mark.parametrize("kernel_class", KERNELS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_central_differences_in_log_space(
    kernel_class, activation, X, condition
):
    kernel = kernel_class(depth=4, activation=activation, beta=0.3, weight_std=1.2)
    K, gradient = kernel(X, eval_gradient=True)
    # The values take one path with and without gradients: bit for bit equal.
    np.testing.assert_array_equal(K, kernel(X))
    expected = _log_space_finite_differences(kernel, X)
    tolerance = _central_difference_tolerance(kernel, X, expected, condition)
    np.testing.assert_allclose(gradient, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_gradient_of_a_callable_activation(kernel_class, X, condition):
    def swish(x):
        return x / (1.0 + np.exp(-x))

    kernel = kernel_class(depth=3, activation=swish)
    _, gradient = kernel(X, eval_gradient=True)
    expected = _log_space_finite_differences(kernel, X)
    # The callable's second and third derivatives (Price's theorem) come from
    # finite-difference stencils accurate to 1e-10 and 1e-8 relative (the
    # package's stated accuracy), in each of the depth - 1 = 2 layers.
    np.testing.assert_allclose(gradient, expected, rtol=0,
                               atol=_central_difference_tolerance(
                                   kernel, X, expected, condition,
                                   activation_error=2 * 1e-8))


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_hyperparameters_are_beta_then_weight_std_in_log_space(kernel_class):
    kernel = kernel_class(beta=0.5, weight_std=2.0)
    assert [h.name for h in kernel.hyperparameters] == ["beta", "weight_std"]
    # theta and bounds are np.log of the same numbers.
    np.testing.assert_array_equal(kernel.theta, np.log([0.5, 2.0]))
    np.testing.assert_array_equal(kernel.bounds, np.log([[1e-2, 1e1], [1e-1, 1e1]]))
    updated = kernel.clone_with_theta(np.log([0.2, 3.0]))
    # exp(log x): log's rounding (eps/2 |log x| absolute) becomes relative,
    # plus exp's own eps/2: eps (1 + |log x|) / 2 <= 2 eps for x in [0.2, 3].
    assert updated.beta == pytest.approx(0.2, rel=2 * EPS)
    assert updated.weight_std == pytest.approx(3.0, rel=2 * EPS)


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_fixed_hyperparameters_drop_out_of_theta_and_gradient(kernel_class, X):
    kernel = kernel_class(weight_std_bounds="fixed")
    assert kernel.theta.shape == (1,)
    K, gradient = kernel(X, eval_gradient=True)
    _, full_gradient = kernel_class()(X, eval_gradient=True)
    np.testing.assert_array_equal(gradient[..., 0], full_gradient[..., 0])
    # No bias (beta = 0) is valid; log(0) is not, so beta is then fixed.
    no_bias = kernel_class(beta=0.0)
    assert no_bias.hyperparameter_beta.fixed
    assert no_bias(X, eval_gradient=True)[1].shape == (12, 12, 1)


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_diag_equals_the_diagonal_of_the_matrix_bit_for_bit(kernel_class, X):
    X = np.vstack([X, X[:3]])  # duplicates
    kernel = kernel_class(depth=5, activation="tanh")
    np.testing.assert_array_equal(kernel.diag(X), np.diag(kernel(X)))


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_kernel_is_symmetric_positive_semidefinite(kernel_class, X, condition):
    K = kernel_class(depth=4)(X)
    assert np.array_equal(K, K.T)
    # Weyl: the computed eigenvalues move by at most ‖δK‖₂ <= n max|δK_ij|,
    # from K's rounding (d-term first layer, ~16 passes a layer, times its
    # condition) and eigvalsh's backward error (n eps ‖K‖₂).
    n, d = X.shape
    rounding = (d + 16 * 4) * EPS * condition(kernel_class(depth=4), X)
    assert np.linalg.eigvalsh(K).min() > -n * (rounding + EPS) * np.abs(K).max()


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_clone_params_equality_repr_and_pickle(kernel_class, X):
    kernel = kernel_class(depth=2, activation="erf", beta=0.2, weight_std=1.5)
    assert kernel.get_params()["depth"] == 2
    assert clone(kernel) == kernel
    assert kernel != kernel_class(depth=3, activation="erf", beta=0.2, weight_std=1.5)
    assert repr(kernel) == (
        f"{kernel_class.__name__}(depth=2, activation='erf', beta=0.2, weight_std=1.5)"
    )
    restored = pickle.loads(pickle.dumps(kernel))
    np.testing.assert_array_equal(restored(X), kernel(X))
    assert kernel.is_stationary() is False
    assert kernel.requires_vector_input


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_composes_with_constant_and_white_kernels(kernel_class, X, condition):
    base = kernel_class(depth=3)
    composed = ConstantKernel(2.0) * base + WhiteKernel(0.1)
    # The same products and sums (2.0 K is exact): the same numbers.
    np.testing.assert_array_equal(composed(X), 2.0 * base(X) + 0.1 * np.eye(len(X)))
    np.testing.assert_array_equal(composed.diag(X), 2.0 * base.diag(X) + 0.1)
    K, gradient = composed(X, eval_gradient=True)
    assert gradient.shape == (12, 12, 4)
    expected = _log_space_finite_differences(composed, X)
    # The constant 2 doubles the base kernel's error; the constant's and the
    # white kernel's own gradients are exact exponentials, truncated less.
    tolerance = _central_difference_tolerance(base, X, expected, condition)
    np.testing.assert_allclose(gradient, expected, rtol=0, atol=2 * tolerance)


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_gaussian_process_regressor_optimises_the_hyperparameters(kernel_class):
    X, y = make_regression(n_samples=40, n_features=4, noise=1.0, random_state=0)
    X /= np.abs(X).max()
    y = y / y.std()
    kernel = ConstantKernel() * kernel_class(depth=3) + WhiteKernel()
    gpr = GaussianProcessRegressor(kernel=kernel, random_state=0).fit(X, y)
    start = GaussianProcessRegressor(kernel=kernel, optimizer=None).fit(X, y)
    assert gpr.log_marginal_likelihood_value_ > start.log_marginal_likelihood_value_
    # The optimum is a stationary point of the log marginal likelihood, as far
    # as L-BFGS-B's stopping rules (scikit-learn's defaults: projected gradient
    # below pgtol = 1e-5, or a relative decrease below factr eps = 1e7 eps)
    # make it one: near a quadratic optimum the second rule leaves
    # |g| <= sqrt(2 factr eps |LML| λ_max(Hessian)); the Hessian's diagonal
    # comes from central differences of the gradient.
    theta = gpr.kernel_.theta
    lml, gradient = gpr.log_marginal_likelihood(theta, eval_gradient=True)
    free = ~np.isclose(theta[:, None], gpr.kernel_.bounds).any(axis=1)
    curvature = 0.0
    for index in np.flatnonzero(free):
        shift = np.zeros_like(theta)
        shift[index] = 1e-4
        plus = gpr.log_marginal_likelihood(theta + shift, eval_gradient=True)[1]
        minus = gpr.log_marginal_likelihood(theta - shift, eval_gradient=True)[1]
        curvature += np.abs(plus - minus).max() / 2e-4
    bound = max(1e-5, np.sqrt(2 * 1e7 * EPS * abs(lml) * curvature))
    assert np.all(np.abs(gradient[free]) <= bound)
    # The data inform the fitted process: at the training points its
    # posterior spread is below the prior's (noise included).
    _, std = gpr.predict(X, return_std=True)
    assert np.all(std < np.sqrt(gpr.kernel_.diag(X)))


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_gaussian_process_classifier(kernel_class):
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    gpc = GaussianProcessClassifier(kernel=kernel_class(depth=2), random_state=0)
    assert gpc.fit(X, y).score(X, y) > 0.8


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_support_vector_machines_and_kernel_ridge(kernel_class, condition):
    X, y = make_regression(n_samples=50, n_features=3, noise=0.1, random_state=1)
    kernel = kernel_class(depth=3)
    K = kernel(X)
    precomputed = KernelRidge(kernel="precomputed", alpha=0.1).fit(K, y)
    ridge = KernelRidge(kernel=kernel, alpha=0.1).fit(X, y)
    # The callable is evaluated as K(X, X), the symmetric path's rounding
    # twin (d-term sums, ~16 passes a layer, times K's condition); the solve
    # amplifies that and its own backward error (n eps) by κ(K + alpha I).
    n, d = X.shape
    rounding = 2 * (d + 16 * 3) * EPS * condition(kernel, X)
    kappa = np.linalg.cond(K + 0.1 * np.eye(n))
    prediction = precomputed.predict(K)
    np.testing.assert_allclose(
        ridge.predict(X), prediction, rtol=0,
        atol=(1 + kappa) * (rounding + 2 * n * EPS) * np.abs(prediction).max())
    svr = SVR(kernel=kernel, C=10.0).fit(X, y)
    svr_precomputed = SVR(kernel="precomputed", C=10.0).fit(K, y)
    # libsvm stops when the KKT conditions hold to tol = 1e-3 (in the units
    # of y): kernels equal to rounding may stop at other iterates, each
    # within that of the exact solution.
    np.testing.assert_allclose(svr.predict(X), svr_precomputed.predict(K), rtol=0,
                               atol=2 * svr.tol)
    labels = (y > np.median(y)).astype(int)
    svc = SVC(kernel=kernel, C=10.0).fit(X, labels)
    assert svc.score(X, labels) > 0.8


@pytest.mark.parametrize("kernel_class", KERNELS)
@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"depth": 0}, ValueError, "'depth' parameter of {name} must be an int"),
        ({"depth": 2.5}, TypeError, "'depth' parameter of {name} must be an int"),
        ({"depth": True}, TypeError, "'depth' parameter of {name} must be an int"),
        ({"beta": -0.1}, ValueError, r"'beta' parameter of {name} must be a float in the range \[0.0, inf\)"),
        ({"beta": np.nan}, ValueError, "'beta' parameter of {name} must be a float"),
        ({"beta": np.inf}, ValueError, "'beta' parameter of {name} must be a float"),
        ({"weight_std": 0.0}, ValueError, r"'weight_std' parameter of {name} must be a float in the range \(0.0, inf\)"),
        ({"weight_std": "big"}, TypeError, "'weight_std' parameter of {name} must be a float"),
        ({"activation": "swish"}, ValueError, "'activation' parameter of {name} must be a str among"),
    ],
)
def test_bad_parameters_raise_errors_naming_them(kernel_class, params, error, message, X):
    # scikit-learn's parameter validation, as for the estimators.
    message = message.format(name=kernel_class.__name__)
    with pytest.raises(error, match=message):
        kernel_class(**params)(X)
    with pytest.raises(error, match=message):
        kernel_class(**params).diag(X)


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_bad_inputs_raise_errors_naming_the_problem(kernel_class, X):
    kernel = kernel_class()
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        kernel(bad)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Input Y contains infinity"):
        kernel(X, bad)
    with pytest.raises(ValueError, match="X has 3 features but Y has 2"):
        kernel(X, X[:, :2])
    with pytest.raises(ValueError, match="Gradient can only be evaluated when Y is None"):
        kernel(X, X, eval_gradient=True)
    with pytest.raises(ValueError, match="Expected 2D array"):
        kernel(X[0])


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_n_jobs_is_validated_before_joblib(kernel_class, X):
    message = f"'n_jobs' parameter of {kernel_class.__name__} must be None, an int"
    for n_jobs, error in [(0, ValueError), (1.5, TypeError), (True, TypeError)]:
        kernel = kernel_class(n_jobs=n_jobs)
        with pytest.raises(error, match=message):
            kernel(X)
        with pytest.raises(error, match=message):
            kernel.diag(X)
    np.testing.assert_array_equal(kernel_class(n_jobs=-1)(X), kernel_class()(X))


@pytest.mark.parametrize("kernel_class", KERNELS)
def test_unknown_keyword_names_the_public_class(kernel_class):
    with pytest.raises(TypeError, match=rf"^{kernel_class.__name__}\.__init__\(\)"):
        kernel_class(bogus=1)
    # get_params (and so clone) reads the public class's own signature.
    assert set(kernel_class().get_params()) == {
        "depth", "activation", "beta", "weight_std", "beta_bounds",
        "weight_std_bounds", "n_jobs",
    }
