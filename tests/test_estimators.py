"""Tests of NTKRegressor, NNGPRegressor and NTKClassifier."""

import pickle

import numpy as np
import pytest
import scipy.linalg
from joblib import Memory
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_ntk._estimators as estimators_module
from sklearn_ntk import NNGP, NTK, NNGPRegressor, NTKClassifier, NTKRegressor
from sklearn_ntk import SingularKernelWarning

REGRESSORS = [NTKRegressor, NNGPRegressor]
EPS = np.finfo(float).eps


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2]
    X_test = rng.normal(size=(9, 4))
    return X, y, X_test


def relative_error(actual, expected):
    return np.max(np.abs(actual - expected)) / np.max(np.abs(expected))


def rounding_tolerance(condition, predict, X, X_test, estimator, kernel_error=0.0):
    """Absolute tolerance between two float64 computations of ``predict(X, X_test)``.

    Each side rounds the kernels (a d-term first layer and ~16 elementwise
    passes a layer), amplified by the prediction's condition (measured,
    normwise), and solves with the training kernel K + alpha I (backward
    error n eps, amplified by its condition number κ): at most
    2 eps ((d + 16 depth) cond + n κ) max|prediction|.  A relative error
    ``kernel_error`` of one side's kernels adds (1 + κ) kernel_error times it.
    """
    n, d = X.shape
    kernel = (NTK if estimator._kind == "ntk" else NNGP)(
        depth=estimator.depth, activation=estimator.activation,
        beta=estimator.beta, weight_std=estimator.weight_std)
    kappa = np.linalg.cond(kernel(X) + estimator.alpha * np.eye(n))
    cond = condition(predict, X, X_test, normwise=True)
    scale = np.abs(predict(X, X_test)).max()
    rounding = 2 * EPS * ((d + 16 * estimator.depth) * cond + n * kappa)
    return (rounding + (1 + kappa) * kernel_error) * scale


# -- correctness against outside oracles ---------------------------------------


@pytest.mark.parametrize(
    "mode, Estimator", [("ntk", NTKRegressor), ("nngp", NNGPRegressor)]
)
@pytest.mark.parametrize("time", ["5.0", "None"])
def test_matches_neural_tangents_ensemble(
    neural_tangents_reference, mode, Estimator, time, condition, monkeypatch
):
    """Mean and covariance equal gradient_descent_mse_ensemble to within rounding
    and the reference's own error on the NTK's diagonal."""
    reference = neural_tangents_reference
    key = f"ens|{mode}|relu|3|0.1|1.0|0.0001|{time}|"
    t = np.inf if time == "None" else float(time)
    reg = Estimator(depth=3, beta=0.1, learning_rate=1.0, alpha=1e-4, t=t)
    X, X_test = reference["Xtr"], reference["Xte"]

    def predict(X, X_test):
        prediction = clone(reg).fit(X, reference["ytr"]).predict(X_test,
                                                                 return_cov=True)
        return np.concatenate([prediction[0].ravel(), prediction[1].ravel()])

    actual = predict(X, X_test)
    expected = np.concatenate([reference[key + "mean"].ravel(),
                               reference[key + "cov"].ravel()])
    # neural-tangents does not snap ρ = Σ/sqrt(Σ Σ) on the diagonal to 1:
    # arccos turns its few (<= 4) ulps below 1 into θ <= sqrt(8 eps), and
    # every layer's Σ̇ = (π - θ)/(2π) of the training NTK's diagonal is then
    # off by up to θ/π relative.  Its effect is that bound times the
    # prediction's measured sensitivity to each diagonal entry; the NNGP's
    # diagonal only moves by O(θ²) = O(eps).
    sensitivity = np.zeros_like(actual)
    if mode == "ntk":
        original, delta = estimators_module.kernel_matrices, 1e-6
        for i in range(len(X)):
            def perturbed(A, B=None, i=i, **kwargs):
                result = original(A, B, **kwargs)
                if B is None and len(A) == len(X):  # the training kernels
                    result.ntk[i, i] *= 1 + delta
                return result

            monkeypatch.setattr(estimators_module, "kernel_matrices", perturbed)
            sensitivity += np.abs(predict(X, X_test) - actual) / delta
        monkeypatch.setattr(estimators_module, "kernel_matrices", original)
    reference_error = 2 * np.sqrt(8 * EPS) / np.pi * sensitivity
    tolerance = reference_error + rounding_tolerance(condition, predict, X, X_test,
                                                     reg)
    assert np.all(np.abs(actual - expected) <= tolerance)
    # std = sqrt(diag cov) moves by half the variance's error over std.
    reg.fit(X, reference["ytr"])
    mean_std, std = reg.predict(X_test, return_std=True)
    n_test = len(X_test)
    mean_tolerance, cov_tolerance = tolerance[:n_test], tolerance[n_test:]
    assert np.all(np.abs(mean_std - actual[:n_test]) <= mean_tolerance)
    variance = np.diag(reference[key + "cov"])
    assert np.all(np.abs(std - np.sqrt(variance)) <= np.diag(
        cov_tolerance.reshape(n_test, n_test)) / (2 * np.sqrt(variance)))


@pytest.mark.parametrize("alpha", [1e-10, 1e-2, 0.5])
def test_nngp_regressor_is_gaussian_process_posterior(problem, alpha, condition):
    X, y, X_test = problem
    kernel = NNGP(depth=3, activation="erf", beta=0.2, weight_std=1.3)
    gpr = GaussianProcessRegressor(kernel=kernel, alpha=alpha, optimizer=None)
    gpr.fit(X, y)
    reg = NNGPRegressor(
        depth=3, activation="erf", beta=0.2, weight_std=1.3, alpha=alpha
    )
    reg.fit(X, y)
    for options in [{"return_std": True}, {"return_cov": True}]:
        expected = gpr.predict(X_test, **options)
        actual = reg.predict(X_test, **options)
        for index in range(2):  # the mean, then the std or covariance
            def predict(X, X_test, index=index):
                return clone(reg).fit(X, y).predict(X_test, **options)[index]

            # The same kernel, solved by another Cholesky: rounding only.
            assert_allclose(actual[index], expected[index], rtol=0, atol=(
                rounding_tolerance(condition, predict, X, X_test, reg)))


def test_ntk_regressor_at_infinity_is_kernel_regression(problem, condition):
    X, y, X_test = problem
    kernel = NTK(depth=4, beta=0.3)
    expected = kernel(X_test, X) @ np.linalg.solve(kernel(X) + 1e-3 * np.eye(len(X)), y)
    reg = NTKRegressor(depth=4, beta=0.3, alpha=1e-3).fit(X, y)
    # Cholesky against LU on the same kernels: rounding only.
    tolerance = rounding_tolerance(
        condition, lambda X, X_test: clone(reg).fit(X, y).predict(X_test), X, X_test,
        reg)
    assert_allclose(reg.predict(X_test), expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_finite_time_mean_matches_matrix_exponential(problem, Estimator, condition):
    """Check the spectral formula against expm of the training kernel."""
    X, y, X_test = problem
    reg = Estimator(depth=2, t=7.0, learning_rate=0.3, alpha=1e-3).fit(X, y)
    kind = NTK if Estimator is NTKRegressor else NNGP
    K = kind(depth=2)(X) + 1e-3 * np.eye(len(X))
    c = 0.3 * 7.0 / len(X)
    # (I − e^{−cK}) K⁻¹ y
    weights = np.linalg.solve(K, y - scipy.linalg.expm(-c * K) @ y)
    # Rounding of both sides; expm's backward error (Al-Mohy and Higham:
    # unit roundoff relative to ‖cK‖) scales the solve's share by 1 + c‖K‖.
    tolerance = (1 + c * np.linalg.norm(K, 2)) * rounding_tolerance(
        condition, lambda X, X_test: clone(reg).fit(X, y).predict(X_test), X, X_test,
        reg)
    assert_allclose(reg.predict(X_test), kind(depth=2)(X_test, X) @ weights, rtol=0,
                    atol=tolerance)


# -- dynamics ------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_time_zero_is_prior(problem, Estimator):
    X, y, X_test = problem
    reg = Estimator(depth=3, t=0.0).fit(X, y)
    mean, cov = reg.predict(X_test, return_cov=True)
    assert_array_equal(mean, 0.0)
    # The training terms are multiplied by 1 - exp(0) = 0 exactly, leaving the
    # prior computed by the same kernel code (diag is np.diag bit for bit).
    assert_array_equal(cov, NNGP(depth=3)(X_test))
    _, std = reg.predict(X_test, return_std=True)
    assert_array_equal(std, np.sqrt(NNGP(depth=3).diag(X_test)))


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_training_loss_never_increases(problem, Estimator):
    X, y, _ = problem
    times = np.concatenate([[0.0], np.geomspace(1e-2, 1e6, 60), [np.inf]])
    reg = Estimator(depth=3, t=1.0, alpha=0.0).fit(X, y)
    losses = ((reg.staged_predict(X, times) - y) ** 2).mean(axis=1)
    # Exactly monotone for the computed eigenpairs (all eigenvalues > 0 here);
    # rebuilding a prediction with orthonormal eigenvectors costs n-term sums,
    # |δr| <= 2 n eps |y|, so a loss moves by <= 4 n eps losses[0] (t = 0:
    # the loss is mean(y²)) and a difference of two by twice that.
    n = len(X)
    kernel = (NTK if Estimator is NTKRegressor else NNGP)(depth=3)(X)
    assert np.linalg.eigvalsh(kernel).min() > 0
    assert np.all(np.diff(losses) <= 8 * n * EPS * losses[0])
    # At t = inf the interpolant's residual is rounding: the solve's backward
    # error (n eps) and the cross kernel's rounding against the training
    # kernel's (2 (d + 16 depth) eps, see test_recursion), times κ(K).
    relative_residual = (n + 2 * (X.shape[1] + 16 * 3)) * EPS * np.linalg.cond(kernel)
    assert losses[-1] <= relative_residual**2 * losses[0]


@pytest.mark.parametrize("Estimator", REGRESSORS)
@pytest.mark.parametrize("fitted_t", [np.inf, 2.0])
def test_staged_predict_equals_predict(problem, Estimator, fitted_t, condition):
    X, y, X_test = problem
    times = [0.0, 0.5, 3.0, 40.0, np.inf]
    reg = Estimator(depth=2, t=fitted_t, alpha=1e-6).fit(X, y)
    staged = reg.staged_predict(X_test, times)
    staged_mean, staged_std = reg.staged_predict(X_test, times, return_std=True)
    staged_mean_c, staged_cov = reg.staged_predict(X_test, times, return_cov=True)
    assert staged.shape == (len(times), len(X_test))
    # The same coefficients times test kernels chunked by another working
    # memory: n-term sums, |δ| <= 2 n eps (|K_*| |coef|), bounded by norms.
    n = len(X)
    K_test = (NTK if Estimator is NTKRegressor else NNGP)(depth=2)(X_test, X)
    solution = np.linalg.solve(
        (NTK if Estimator is NTKRegressor else NNGP)(depth=2)(X) + 1e-6 * np.eye(n), y)
    chunking = 2 * n * EPS * np.abs(K_test).sum(axis=1).max() * np.linalg.norm(solution)
    assert_allclose(staged_mean, staged, rtol=0, atol=chunking)
    assert_allclose(staged_mean_c, staged, rtol=0, atol=chunking)
    # t = inf is a Cholesky solve in predict, an eigensolve in the path:
    # rounding only, each output with its measured condition (over all times).
    tolerances = []
    for options in ({}, {"return_std": True}, {"return_cov": True}):
        def predict(X, X_test, options=options):
            path = clone(reg).fit(X, y).staged_predict(X_test, times, **options)
            return path[1] if options else path

        tolerances.append(rounding_tolerance(condition, predict, X, X_test, reg))
    for i, t in enumerate(times):
        single = clone(reg).set_params(t=t).fit(X, y)
        mean, std = single.predict(X_test, return_std=True)
        _, cov = single.predict(X_test, return_cov=True)
        for staged_output, output, tolerance in zip(
            (staged[i], staged_std[i], staged_cov[i]), (mean, std, cov), tolerances
        ):
            assert_allclose(staged_output, output, rtol=0, atol=tolerance)


def test_large_time_converges_to_infinity(problem, condition):
    X, y, X_test = problem
    converged = NTKRegressor(alpha=1e-2).fit(X, y).predict(X_test, return_std=True)
    late = NTKRegressor(alpha=1e-2, t=1e9).fit(X, y).predict(X_test, return_std=True)
    # exp(-η t λ_min / n) <= exp(-1e9 · 1e-2 / 30) underflows to 0: the limit
    # itself, by an eigensolve instead of a Cholesky solve; rounding only.
    reg = NTKRegressor(alpha=1e-2)
    for index in range(2):
        def predict(X, X_test, index=index):
            return clone(reg).fit(X, y).predict(X_test, return_std=True)[index]

        assert_allclose(late[index], converged[index], rtol=0,
                        atol=rounding_tolerance(condition, predict, X, X_test, reg))


def test_learning_rate_scales_time(problem):
    X, y, X_test = problem
    a = NTKRegressor(t=6.0, learning_rate=0.5).fit(X, y).predict(X_test)
    b = NTKRegressor(t=3.0, learning_rate=1.0).fit(X, y).predict(X_test)
    # η t = 3.0 exactly either way: the same operations.
    assert_array_equal(a, b)


@pytest.mark.parametrize("Estimator", REGRESSORS)
@pytest.mark.parametrize("t", [np.inf, 4.0])
def test_multi_output_equals_columnwise(problem, Estimator, t, condition):
    X, y, X_test = problem
    Y = np.column_stack([y, np.cos(X[:, 1]), -2.0 * y])
    reg = Estimator(t=t).fit(X, Y)
    mean, std = reg.predict(X_test, return_std=True)
    _, cov = reg.predict(X_test, return_cov=True)
    assert mean.shape == std.shape == (len(X_test), 3)
    assert cov.shape == (len(X_test), len(X_test), 3)
    staged = reg.staged_predict(X_test, [1.0, t])
    assert staged.shape == (2, len(X_test), 3)
    for k in range(3):
        column = Estimator(t=t).fit(X, Y[:, k])
        column_mean, column_std = column.predict(X_test, return_std=True)
        # Solves with three right-hand sides at once or one: rounding only.
        tolerance = rounding_tolerance(
            condition, lambda X, X_test, k=k: clone(column).fit(X, Y[:, k]).predict(
                X_test), X, X_test, column)
        assert_allclose(mean[:, k], column_mean, rtol=0, atol=tolerance)
        # The spread does not depend on the targets: the same operations.
        assert_array_equal(std[:, k], column_std)
        assert_array_equal(cov[..., k], column.predict(X_test, return_cov=True)[1])
    # The fitted time again, through staged_predict's path (an eigensolve at
    # t = inf): rounding only, as for each column.
    for k in range(3):
        tolerance = rounding_tolerance(
            condition, lambda X, X_test, k=k: Estimator(t=t).fit(X, Y[:, k]).predict(
                X_test), X, X_test, reg)
        assert_allclose(staged[1][:, k], mean[:, k], rtol=0, atol=tolerance)
    # A one-column 2-D target keeps its column, as in KernelRidge.
    one = Estimator(t=t).fit(X, Y[:, :1])
    assert one.predict(X_test).shape == (len(X_test), 1)
    assert one.predict(X_test, return_std=True)[1].shape == (len(X_test), 1)


@pytest.mark.parametrize("Estimator", REGRESSORS)
@pytest.mark.parametrize("t", [np.inf, 4.0])
def test_predict_in_chunks_without_test_by_test_matrix(
    problem, Estimator, t, monkeypatch, condition
):
    X, y, _ = problem
    X_test = np.random.default_rng(1).normal(size=(400, 4))
    reg = Estimator(t=t).fit(X, y)
    expected_mean, expected_std = reg.predict(X_test, return_std=True)
    calls = []
    original = estimators_module.kernel_matrices

    def recording(A, B=None, **kwargs):
        calls.append((len(A), None if B is None else len(B)))
        return original(A, B, **kwargs)

    monkeypatch.setattr(estimators_module, "kernel_matrices", recording)
    # 30 training points × 8 bytes × ~5 temporaries ≈ 1 kB a row: ~100 rows.
    with config_context(working_memory=0.1):
        mean, std = reg.predict(X_test, return_std=True)
    assert len(calls) > 3
    assert all(n_y == len(X) and n_x < len(X_test) for n_x, n_y in calls)
    monkeypatch.setattr(estimators_module, "kernel_matrices", original)
    # Row blocks of other shapes: the same sums in another order, bounded as
    # any two roundings of the prediction.
    for index, (actual, expected) in enumerate([(mean, expected_mean),
                                                (std, expected_std)]):
        def predict(X, X_test, index=index):
            return clone(reg).fit(X, y).predict(X_test, return_std=True)[index]

        assert_allclose(actual, expected, rtol=0, atol=rounding_tolerance(
            condition, predict, X, X_test, reg))


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_singular_kernel_at_infinity_falls_back_with_warning(Estimator):
    # A linear network (depth 1) has a rank-3 kernel on 12 points.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 2))
    X = np.vstack([X, X])  # and duplicated points
    y = np.concatenate([X[:12, 0], X[:12, 0]])
    reg = Estimator(depth=1, alpha=0.0)
    with pytest.warns(SingularKernelWarning, match="increase alpha"):
        reg.fit(X, y)
    mean, std = reg.predict(X, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    # The minimum-norm interpolant of a linear target is the target, to
    # rounding amplified by the condition of the kernel's range (eigenvalues
    # below n eps λ_max are rounding and dropped): 2 (n + d + 16) eps κ₊.
    n = len(X)
    eigenvalues = np.linalg.eigvalsh(NTK(depth=1)(X))
    kept = eigenvalues[eigenvalues > n * EPS * eigenvalues.max()]
    atol = (2 * (n + X.shape[1] + 16) * EPS * kept.max() / kept.min()
            * np.abs(y).max())
    assert_allclose(mean, y, rtol=0, atol=atol)
    # The eigensolve's interpolant, also within atol of y: within 2 atol.
    assert_allclose(mean, reg.staged_predict(X, [np.inf])[0], rtol=0, atol=2 * atol)


def test_memory_computes_each_training_kernel_once(problem, tmp_path, monkeypatch):
    """With ``memory``, a search over t computes one training kernel per fold
    and depth, and later fits with other t, alpha or targets compute none."""
    X, y, _ = problem
    computed = []  # (training inputs, depth) of every training kernel computed
    kernel_matrices = estimators_module.kernel_matrices

    def recording(A, B=None, **kwargs):
        if B is None:  # training kernels only, not predictions
            computed.append((A.tobytes(), kwargs["depth"]))
        return kernel_matrices(A, B, **kwargs)

    monkeypatch.setattr(estimators_module, "kernel_matrices", recording)
    grid = {"depth": [1, 3], "t": [0.5, 5.0, 50.0, np.inf]}
    cv = KFold(3, shuffle=True, random_state=0)

    def search(memory):
        computed.clear()
        gs = GridSearchCV(NTKRegressor(memory=memory), grid, cv=cv, refit=False)
        return gs.fit(X, y).cv_results_["mean_test_score"], list(computed)

    plain_scores, plain_kernels = search(None)
    folds_and_depths = set(plain_kernels)
    assert len(folds_and_depths) == 3 * 2
    cached_scores, cached_kernels = search(str(tmp_path / "cache"))
    assert sorted(cached_kernels) == sorted(folds_and_depths)
    # The cached kernels are the same numbers, then the same operations.
    assert_array_equal(cached_scores, plain_scores)
    # A second search reuses everything.  (A str location, as check_memory
    # builds from a path: joblib 1.6 puts a Path location's cache in a
    # different directory.)
    memory = Memory(str(tmp_path / "cache"), verbose=0)
    again_scores, again_kernels = search(memory)
    assert again_kernels == []
    assert_array_equal(again_scores, plain_scores)
    # New training data: one kernel; then other t, alpha or targets: none.
    computed.clear()
    reg = NTKRegressor(t=2.0, alpha=1e-3, memory=memory).fit(X, y)
    assert len(computed) == 1
    NTKRegressor(t=7.0, alpha=1e-3, memory=memory).fit(X, -y)
    NTKRegressor(t=np.inf, alpha=1e-2, memory=memory).fit(X, y)
    assert len(computed) == 1
    # The covariance reads the NNGP kernel back from the kernel cache: no
    # training kernel is computed, and the numbers are those without a cache.
    expected = NTKRegressor(t=2.0, alpha=1e-3).fit(X, y).predict(X, return_std=True)
    computed.clear()
    for cached_output, output in zip(reg.predict(X, return_std=True), expected):
        assert_array_equal(cached_output, output)
    assert computed == []


def test_memory_with_callable_activation(problem, tmp_path, condition):
    X, y, X_test = problem
    named = NTKRegressor(activation="tanh", t=3.0)
    expected = named.fit(X, y).predict(X_test)
    # A callable's σ' comes from finite differences accurate to 1e-12 relative
    # (two factors in each of the depth - 1 = 2 layers' Σ̇): a kernel error of
    # 4e-12 on top of rounding.
    tolerance = rounding_tolerance(
        condition, lambda X, X_test: clone(named).fit(X, y).predict(X_test), X,
        X_test, named, kernel_error=2 * 2 * 1e-12)
    cached = NTKRegressor(activation=np.tanh, t=3.0, memory=str(tmp_path))
    assert_allclose(cached.fit(X, y).predict(X_test), expected, rtol=0, atol=tolerance)
    assert_allclose(cached.fit(X, y).predict(X_test), expected, rtol=0, atol=tolerance)
    # A lambda cannot be hashed: computed without the cache, with a warning.
    unhashable = NTKRegressor(
        activation=lambda x: np.tanh(x), t=3.0, memory=str(tmp_path)
    )
    with pytest.warns(UserWarning, match="memory is ignored"):
        unhashable.fit(X, y)
    assert_allclose(unhashable.predict(X_test), expected, rtol=0, atol=tolerance)


# -- the scikit-learn API ------------------------------------------------------


@parametrize_with_checks(
    [
        NTKRegressor(),
        NNGPRegressor(),
        NTKClassifier(),
        # Finite t: early stopping, long enough to fit the checks' data.
        NTKRegressor(t=1e4, depth=2),
        NNGPRegressor(t=1e4, activation="erf"),
        NTKClassifier(t=1e3),
        # The Krylov bases in place of the eigendecomposition.
        NTKRegressor(t=1e4, depth=2, solver="krylov"),
        NTKClassifier(t=1e3, solver="krylov"),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("Estimator", REGRESSORS + [NTKClassifier])
def test_pickle_and_clone(problem, Estimator):
    X, y, X_test = problem
    if Estimator is NTKClassifier:
        y = np.where(y > 0, "up", "down")
    est = Estimator(depth=2, t=3.0, alpha=1e-4).fit(X, y)
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.predict(X_test), est.predict(X_test))
    cloned = clone(est)
    assert cloned.get_params() == est.get_params()
    assert not hasattr(cloned, "X_train_")
    assert_array_equal(cloned.fit(X, y).predict(X_test), est.predict(X_test))


@pytest.mark.parametrize("Estimator", REGRESSORS + [NTKClassifier])
def test_grid_search_with_and_without_memory(problem, Estimator, tmp_path):
    X, y, _ = problem
    if Estimator is NTKClassifier:
        y = (y > 0).astype(int)
    grid = {"ntkestimator__depth": [1, 2, 4], "ntkestimator__t": [0.1, 10.0, np.inf]}
    results = []
    for memory in [None, str(tmp_path)]:
        pipe = make_pipeline(StandardScaler(), Estimator(memory=memory))
        pipe.steps[-1] = ("ntkestimator", pipe.steps[-1][1])
        search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
        results.append(search)
    plain, cached = results
    assert plain.best_params_ == cached.best_params_
    assert_array_equal(
        plain.cv_results_["mean_test_score"], cached.cv_results_["mean_test_score"]
    )
    assert_array_equal(plain.predict(X), cached.predict(X))


def test_classifier_encoding(problem):
    X, y, X_test = problem
    labels = np.array(["a", "b", "c"])[np.digitize(y, [-0.5, 0.5])]
    clf = NTKClassifier(depth=2, t=20.0).fit(X, labels)
    assert_array_equal(clf.classes_, ["a", "b", "c"])
    encoded = np.where(labels[:, None] == clf.classes_[None, :], 1.0, -1.0)
    reg = NTKRegressor(depth=2, t=20.0).fit(X, encoded)
    scores = clf.decision_function(X_test)
    # The classifier is this regression on the ±1 encoding: the same code.
    assert_array_equal(scores, reg.predict(X_test))
    assert_array_equal(clf.predict(X_test), clf.classes_[scores.argmax(axis=1)])
    staged = clf.staged_predict(X_test, [0.0, 20.0])
    assert_array_equal(staged[0], "a")  # untrained: every score is 0
    assert_array_equal(staged[1], clf.predict(X_test))
    # Binary: one output, +1 for classes_[1].
    binary = NTKClassifier(depth=2).fit(X, y > 0)
    scores = binary.decision_function(X_test)
    assert scores.shape == (len(X_test),)
    signs = np.where(y > 0, 1.0, -1.0)
    assert_array_equal(scores, NTKRegressor(depth=2).fit(X, signs).predict(X_test))
    assert_array_equal(binary.predict(X_test), scores > 0)
    assert binary.score(X, y > 0) == 1.0


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("Estimator", REGRESSORS + [NTKClassifier])
@pytest.mark.parametrize(
    "params",
    [{"t": -1.0}, {"t": np.nan}, {"depth": 0}, {"beta": -0.1}, {"weight_std": 0.0},
     {"learning_rate": 0.0}, {"learning_rate": np.inf}, {"alpha": -1.0},
     {"activation": "swish"}, {"memory": 3}],
)
def test_invalid_parameters(problem, Estimator, params):
    X, y, _ = problem
    with pytest.raises(InvalidParameterError):
        Estimator(**params).fit(X, y > 0)


@pytest.mark.parametrize("Estimator", REGRESSORS + [NTKClassifier])
def test_bad_data(problem, Estimator):
    X, y, X_test = problem
    y = y > 0
    with pytest.raises(NotFittedError):
        Estimator().predict(X_test)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Estimator().fit(bad, y)
    est = Estimator().fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        est.predict(bad)
    with pytest.raises(ValueError, match="features"):
        est.predict(X_test[:, :3])
    with pytest.raises(ValueError, match="times"):
        est.staged_predict(X_test, [1.0, -2.0])
    with pytest.raises(ValueError, match="times"):
        est.staged_predict(X_test, [[1.0]])


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_regressor_rejects_bad_targets(problem, Estimator):
    X, y, X_test = problem
    with pytest.raises(ValueError, match="NaN"):
        Estimator().fit(X, np.where(y > 1, np.nan, y))
    with pytest.raises(ValueError, match="could not convert string"):
        Estimator().fit(X, np.where(y > 0, "up", "down"))
    with pytest.raises(RuntimeError, match="return_std or return_cov"):
        Estimator().fit(X, y).predict(X_test, return_std=True, return_cov=True)


def test_classifier_rejects_continuous_targets(problem):
    X, y, _ = problem
    with pytest.raises(ValueError, match="Unknown label type"):
        NTKClassifier().fit(X, y)


# -- targets and parameters that used to fail late ------------------------------


@pytest.mark.parametrize("Estimator", REGRESSORS)
def test_string_targets_behave_the_same_at_every_time(problem, Estimator):
    # As KernelRidge and Ridge: numeric strings are converted to numbers,
    # other strings are rejected at fit, the same way for every t.
    from sklearn.kernel_ridge import KernelRidge

    X, y, X_test = problem
    numeric = y.astype(str)
    reference = KernelRidge(kernel=NTK(depth=2), alpha=1e-3)
    assert_allclose(reference.fit(X, numeric).predict(X_test),
                    reference.fit(X, y).predict(X_test))
    words = np.where(y > 0, "up", "down")
    with pytest.raises(ValueError, match="could not convert string to float"):
        clone(reference).fit(X, words)
    messages = set()
    for t in [np.inf, 10.0, 0.0]:
        est = Estimator(t=t)
        assert_array_equal(est.fit(X, numeric).predict(X_test),
                           clone(est).fit(X, y).predict(X_test))
        assert est.y_train_.dtype == np.float64
        with pytest.raises(ValueError, match="numeric targets") as error:
            clone(est).fit(X, words)
        messages.add(str(error.value))
    assert messages == {
        f"{Estimator.__name__} needs numeric targets y (numbers or numeric strings) "
        "but could not convert string to float: 'up'. For class labels use "
        "NTKClassifier."
    }
    with pytest.raises(ValueError, match="Input y contains NaN"):
        Estimator().fit(X, np.where(y > 0, "nan", "1.0"))


@pytest.mark.parametrize("Estimator", REGRESSORS + [NTKClassifier])
def test_n_jobs_zero_is_rejected_before_joblib(problem, Estimator):
    X, y, _ = problem
    with pytest.raises(InvalidParameterError, match="'n_jobs' parameter"):
        Estimator(n_jobs=0).fit(X, y > 0)
    Estimator(n_jobs=-1).fit(X, y > 0)


@pytest.mark.parametrize("Estimator", REGRESSORS + [NTKClassifier])
def test_unknown_keyword_names_the_public_class(Estimator):
    # The error scikit-learn's own estimators give, e.g.
    # "KernelRidge.__init__() got an unexpected keyword argument 'bogus'".
    with pytest.raises(TypeError, match=rf"^{Estimator.__name__}\.__init__\(\)"):
        Estimator(bogus=1)


@pytest.mark.parametrize("Estimator", REGRESSORS)
@pytest.mark.parametrize("t", [np.inf, 4.0])
def test_one_column_targets_keep_their_column(problem, Estimator, t):
    # KernelRidge keeps y's column in predict and dual_coef_; the spread takes
    # GaussianProcessRegressor's multi-target shapes, (n, k) and (n, n, k).
    from sklearn.kernel_ridge import KernelRidge

    X, y, X_test = problem
    n_test = len(X_test)
    Y = y[:, None]
    kernel = NTK(depth=2) if Estimator is NTKRegressor else NNGP(depth=2)
    ridge = KernelRidge(kernel=kernel, alpha=1e-3).fit(X, Y)
    reg = Estimator(depth=2, t=t, alpha=1e-3).fit(X, Y)
    assert reg.predict(X_test).shape == ridge.predict(X_test).shape == (n_test, 1)
    assert reg.dual_coef_.shape == ridge.dual_coef_.shape == (len(X), 1)
    gpr = GaussianProcessRegressor(kernel=NNGP(depth=2), optimizer=None)
    gpr.fit(X, np.column_stack([y, y]))
    k = 1  # GaussianProcessRegressor's shapes with k targets, here one
    mean, std = reg.predict(X_test, return_std=True)
    assert std.shape == gpr.predict(X_test, return_std=True)[1].shape[:1] + (k,)
    _, cov = reg.predict(X_test, return_cov=True)
    assert cov.shape == gpr.predict(X_test, return_cov=True)[1].shape[:2] + (k,)
    staged, staged_std = reg.staged_predict(X_test, [1.0, t], return_std=True)
    assert staged.shape == staged_std.shape == (2, n_test, 1)
    assert reg.staged_predict(X_test, [1.0, t], return_cov=True)[1].shape == (
        2, n_test, n_test, 1)
    # The same numbers as with 1-D targets.
    flat = Estimator(depth=2, t=t, alpha=1e-3).fit(X, y)
    flat_mean, flat_std = flat.predict(X_test, return_std=True)
    assert_array_equal(mean[:, 0], flat_mean)
    assert_array_equal(std[:, 0], flat_std)
    assert_array_equal(reg.dual_coef_[:, 0], flat.dual_coef_)
    if np.isinf(t):
        # Two solves of K + alpha*I: they agree to its condition number times
        # n eps, relative to the largest prediction.
        train = kernel(X) + 1e-3 * np.eye(len(X))
        tolerance = np.linalg.cond(train) * len(X) * np.finfo(float).eps
        assert relative_error(mean, ridge.predict(X_test)) <= tolerance
