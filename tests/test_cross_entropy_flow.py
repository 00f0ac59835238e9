"""NTKClassifier(loss="log_loss"): gradient flow on the cross-entropy.

The reference is the ODE of the user guide written here with numpy and
integrated by scipy's Radau method at rtol 1e-11: da/dc = −(p(K_α a) − Y),
a(0) = 0, c = η t / N, outputs f(x) = Θ(x, X) a.  The kernel matrices come
from the public NTK kernel (checked against outside references in
test_kernels.py); everything downstream of them is independent of the
package.
"""

import numpy as np
import pytest
from joblib import Memory
from numpy.testing import assert_allclose, assert_array_equal
from scipy.integrate import solve_ivp
from scipy.linalg import eigh, expm
from scipy.special import expit, softmax
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_ntk._cross_entropy_flow as cross_entropy_flow
import sklearn_ntk._estimators as estimators_module
from sklearn_ntk import NTK, NTKClassifier

DEPTH, BETA, ALPHA = 3, 0.1, 1e-10

# The integrator keeps each step's local error below 1e-7 of the output
# scale √(trace K / N), in the root-mean-square of the error's coordinates
# weighted as in the kernel's feature space (docs/user_guide.rst); the
# probabilities' derivative is at most 1/2 in the maximum norm and the
# flow contracts, so the global error of a probability is of the order of
# the tolerance.  Radau at rtol 1e-11, atol 1e-13 is accurate to ~1e-9 on
# these outputs (O(1-10)), far below.  The requirement, 1e-6
# absolute, is checked: a tenfold margin over the expected error.
PROBABILITY_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    X_test = rng.normal(size=(7, 3))
    # Labels from a smooth rule plus noise: not separable by a simple model,
    # fitted slowly by the kernel (eigenvalues over three decades).
    score = X[:, 0] + np.sin(2 * X[:, 1]) + 0.5 * rng.normal(size=30)
    labels = np.digitize(score, [-0.5, 0.5])
    return X, X_test, labels


def reference_probabilities(X, labels, X_test, c, weight_std=1.0):
    """Probabilities at time scale c from scipy's Radau, written out here."""
    kernel = NTK(depth=DEPTH, beta=BETA, weight_std=weight_std)
    K = kernel(X) + ALPHA * np.eye(len(X))
    cross = kernel(X_test, X)
    classes = np.unique(labels)
    binary = classes.size == 2
    Y = (labels == classes[1])[:, None] * 1.0 if binary else (
        labels[:, None] == classes[None]) * 1.0

    def link(outputs):
        return expit(outputs) if binary else softmax(outputs, axis=1)

    def rhs(_, a):
        return -(link(K @ a.reshape(Y.shape)) - Y).ravel()

    if c == 0:
        a = np.zeros(Y.shape)
    else:
        solution = solve_ivp(rhs, (0.0, c), np.zeros(Y.size), method="Radau",
                             rtol=1e-11, atol=1e-13)
        assert solution.success
        a = solution.y[:, -1].reshape(Y.shape)
    outputs = cross @ a
    if binary:
        positive = expit(outputs)
        return np.hstack([1 - positive, positive])
    return link(outputs)


@pytest.fixture(params=["all", 4], ids=["all-directions", "4-stiff-directions"])
def stiff_directions(request, monkeypatch):
    """How many eigen-directions the integrator treats exactly.

    30 training points get all of them by default; with 4 the rest of the
    space is integrated explicitly, the path every N > 256 takes.
    """
    if request.param != "all":
        monkeypatch.setattr(cross_entropy_flow, "STIFF_DIRECTIONS", request.param)
    return request.param


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("t, learning_rate", [(3.0, 1.0), (60.0, 0.5), (900.0, 2.0)])
def test_probabilities_match_radau(data, n_classes, t, learning_rate, stiff_directions):
    X, X_test, labels = data
    if n_classes == 2:
        labels = labels > 0
    clf = NTKClassifier(depth=DEPTH, beta=BETA, alpha=ALPHA, t=t,
                        learning_rate=learning_rate, loss="log_loss").fit(X, labels)
    expected = reference_probabilities(X, labels, X_test, learning_rate * t / len(X))
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), n_classes)
    assert_allclose(proba, expected, rtol=0, atol=PROBABILITY_TOLERANCE)
    # The trained network has moved away from the uniform start.
    assert np.abs(proba - 1 / n_classes).max() > 0.05


@pytest.mark.parametrize("n_classes", [2, 3])
def test_staged_probabilities_match_radau_and_predict_proba(data, n_classes, tmp_path,
                                                            stiff_directions):
    X, X_test, labels = data
    if n_classes == 2:
        labels = labels > 0
    times = [0.0, 2.0, 45.0, 700.0, 45.0]  # unsorted and repeated on purpose
    for memory in (None, Memory(tmp_path, verbose=0)):
        clf = NTKClassifier(depth=DEPTH, beta=BETA, alpha=ALPHA, t=45.0,
                            loss="log_loss", memory=memory).fit(X, labels)
        staged = clf.staged_predict_proba(X_test, times)
        assert staged.shape == (len(times), len(X_test), n_classes)
        assert_allclose(staged[0], 1 / n_classes, rtol=0, atol=0)
        for t, proba in zip(times, staged):
            expected = reference_probabilities(X, labels, X_test, t / len(X))
            assert_allclose(proba, expected, rtol=0, atol=PROBABILITY_TOLERANCE)
            # The same segments of the same trajectory: equal up to the
            # rounding of the products with the kernel (a few ulps of
            # outputs of order 10 through a derivative <= 1/2).
            per_t = clone(clf).set_params(t=t).fit(X, labels).predict_proba(X_test)
            assert_allclose(proba, per_t, rtol=0, atol=1e-13)
        assert_array_equal(clf.staged_predict(X_test, times)[2], clf.predict(X_test))


@pytest.mark.parametrize("weight_std", [0.3, 3.0])
def test_accuracy_does_not_depend_on_the_kernel_scale(data, weight_std):
    # weight_std scales the NTK by about weight_std^(2·depth): 7e-4 and 729
    # here, and t is divided by as much so that training goes as far as at
    # t = 900 on the unit scale.  The error control is in output units (the
    # tolerance over the root mean kernel diagonal), so 1e-6 holds at both
    # scales; before, it allowed errors proportional to the scale.
    X, X_test, labels = data
    t = 900.0 / weight_std ** (2 * DEPTH)
    clf = NTKClassifier(depth=DEPTH, beta=BETA, alpha=ALPHA, weight_std=weight_std,
                        t=t, loss="log_loss").fit(X, labels)
    expected = reference_probabilities(X, labels, X_test, t / len(X), weight_std)
    assert_allclose(clf.predict_proba(X_test), expected, rtol=0,
                    atol=PROBABILITY_TOLERANCE)
    assert np.abs(expected - 1 / 3).max() > 0.05


def test_tol_sets_the_accuracy(data):
    # tol is the local error per step relative to the output scale; the
    # probabilities' error is of its order (1 to 9 times it measured, see
    # _cross_entropy_flow.TOLERANCE): at tol=1e-4 within 1e-3 of Radau, and
    # a different (coarser) trajectory from the default's.
    X, X_test, labels = data
    coarse = NTKClassifier(depth=DEPTH, beta=BETA, alpha=ALPHA, t=900.0,
                           loss="log_loss", tol=1e-4).fit(X, labels)
    fine = clone(coarse).set_params(tol=1e-7).fit(X, labels)
    expected = reference_probabilities(X, labels, X_test, 900.0 / len(X))
    assert_allclose(coarse.predict_proba(X_test), expected, rtol=0, atol=1e-3)
    assert np.abs(coarse.predict_proba(X_test) - fine.predict_proba(X_test)).max() > 0

    def n_steps(clf):
        segments = clf._flow_segments
        return sum(segments(index).times.size - 1
                   for index in range(len(segments.ends)))

    assert n_steps(coarse) < n_steps(fine)


def test_only_learning_rate_times_t_matters(data):
    X, X_test, labels = data
    slow = NTKClassifier(t=400.0, learning_rate=0.25, loss="log_loss").fit(X, labels)
    fast = NTKClassifier(t=50.0, learning_rate=2.0, loss="log_loss").fit(X, labels)
    # η·t is the same float (100.0) in both: identical time scales, so the
    # same computation to the last bit.
    assert_array_equal(slow.predict_proba(X_test), fast.predict_proba(X_test))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_untrained_network_is_uniform(data, n_classes):
    X, X_test, labels = data
    if n_classes == 2:
        labels = labels > 0
    clf = NTKClassifier(t=0.0, loss="log_loss").fit(X, labels)
    assert_array_equal(clf.predict_proba(X_test), 1 / n_classes)
    assert_array_equal(clf.decision_function(X_test), 0.0)


def test_shapes_and_labels_as_logistic_regression(data):
    X, X_test, labels = data
    names = np.array(["low", "mid", "high"])[labels]
    clf = NTKClassifier(t=100.0, loss="log_loss").fit(X, names)
    assert_array_equal(clf.classes_, ["high", "low", "mid"])
    scores = clf.decision_function(X_test)
    proba = clf.predict_proba(X_test)
    assert scores.shape == proba.shape == (len(X_test), 3)
    assert_allclose(proba, softmax(scores, axis=1), rtol=1e-15, atol=0)
    assert_array_equal(clf.predict(X_test), clf.classes_[proba.argmax(axis=1)])
    assert_allclose(clf.predict_log_proba(X_test), np.log(proba), rtol=1e-15)

    binary = NTKClassifier(t=100.0, loss="log_loss").fit(X, names == "high")
    scores = binary.decision_function(X_test)
    proba = binary.predict_proba(X_test)
    assert scores.shape == (len(X_test),)
    assert_allclose(proba[:, 1], expit(scores), rtol=1e-15, atol=0)
    assert_array_equal(binary.predict(X_test), binary.classes_[(scores > 0) * 1])


def test_search_over_t_integrates_each_fold_once(data, tmp_path, monkeypatch):
    X, _, labels = data
    computed = []
    segment = estimators_module.flow_segment

    def counting_segment(flow, index, previous=None):
        computed.append((flow.unit, index))  # the unit 1/λ_max names the fold
        return segment(flow, index, previous)

    monkeypatch.setattr(estimators_module, "flow_segment", counting_segment)
    search = GridSearchCV(
        NTKClassifier(loss="log_loss", memory=Memory(tmp_path, verbose=0)),
        {"t": [300.0, 3.0, 30.0]}, cv=KFold(2), refit=False,
    ).fit(X, labels)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # Each fold integrates its segments 0..k once, k the segment of its
    # largest t: the three times together cost one integration per fold.
    assert len(computed) == len(set(computed))
    folds = {unit for unit, _ in computed}
    assert len(folds) == 2
    for fold in folds:
        indices = sorted(index for unit, index in computed if unit == fold)
        assert indices == list(range(len(indices)))


def test_bad_input(data):
    X, X_test, labels = data
    with pytest.raises(ValueError, match="'loss' parameter"):
        NTKClassifier(loss="hinge").fit(X, labels)
    for tol in (0.0, 1.0, np.nan):
        with pytest.raises(ValueError, match="'tol' parameter"):
            NTKClassifier(t=10.0, loss="log_loss", tol=tol).fit(X, labels)
    with pytest.raises(ValueError, match="'t' parameter"):
        NTKClassifier(t=-1.0, loss="log_loss").fit(X, labels)
    with pytest.raises(ValueError,
                       match="t=np.inf is not available with loss='log_loss'"):
        NTKClassifier(loss="log_loss").fit(X, labels)
    clf = NTKClassifier(t=10.0, loss="log_loss").fit(X, labels)
    with pytest.raises(ValueError, match="np.inf in times"):
        clf.staged_predict_proba(X_test, [1.0, np.inf])
    with pytest.raises(ValueError, match="times t >= 0"):
        clf.staged_predict_proba(X_test, [-1.0])
    with pytest.raises(ValueError, match="2 features"):
        clf.predict_proba(X_test[:, :2])
    # The squared loss has no probabilities.
    assert not hasattr(NTKClassifier(), "predict_proba")
    assert not hasattr(NTKClassifier().fit(X, labels), "staged_predict_proba")


@parametrize_with_checks([NTKClassifier(loss="log_loss", t=1e3)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_early_flow_is_the_squared_loss_at_a_quarter_speed(data):
    # Linearising the logistic link, p(f) = 1/2 + f/4 - f³/48 + ..., turns
    # the flow into the squared-loss flow on targets ±2 at a quarter of the
    # time scale (docs/user_guide.rst): f_log(t) = 2 f_squared(t / 4) up to
    # the cubic term, a relative f²/12 <= 2e-4 for outputs below 0.05.  The
    # squared loss is the closed form, an independent computation.
    X, X_test, labels = data
    labels = labels > 0
    t = 0.4
    log_loss = NTKClassifier(t=t, loss="log_loss").fit(X, labels)
    squared = NTKClassifier(t=t / 4).fit(X, labels)
    expected = 2 * squared.decision_function(X_test)
    assert 0.005 < np.abs(expected).max() < 0.05
    assert_allclose(log_loss.decision_function(X_test), expected,
                    rtol=0, atol=2e-4 * np.abs(expected).max())


@pytest.mark.parametrize("z", [0.0, -1e-12, -0.3, -0.999, -1.0, -1.001, -7.5, -40.0,
                               -1e8])
def test_phi_functions_match_the_matrix_exponential(z):
    # φ_k(z) is the (0, k) entry of exp of the (4, 4) matrix with z at (0, 0)
    # and ones on the superdiagonal (Higham, Functions of Matrices, §10.7.4):
    # an independent computation.  expm is accurate to a few ulps of the
    # matrix's norm (at most 1e8 here); relative to φ_k(z) >= e^z/k!-ish
    # that is below 1e-13 for |z| <= 40, and at z = -1e8, where the
    # recurrence gives φ_k ~ 1/|z|, expm no longer resolves it: compared
    # with the asymptotic form instead.
    computed = cross_entropy_flow.phi_functions(np.array([z]))
    if z > -100:
        matrix = np.diag([z, 0.0, 0.0, 0.0]) + np.diag(np.ones(3), 1)
        expected = expm(matrix)[0]
        assert_allclose(np.concatenate(computed), expected, rtol=1e-13, atol=0)
    else:
        # φ₁ = (e^z − 1)/z, φ₂ = (φ₁ − 1)/z, φ₃ = (φ₂ − 1/2)/z with e^z = 0.
        expected = [0.0, -1 / z, (-1 / z - 1) / z, ((-1 / z - 1) / z - 0.5) / z]
        assert_allclose(np.concatenate(computed), expected, rtol=4e-16, atol=0)


def test_stiff_basis_holds_the_largest_eigenpairs(monkeypatch):
    # Lanczos (ARPACK) against LAPACK's dense eigendecomposition.  Both are
    # backward stable: eigenvalues within a few ulps of the largest.  ARPACK
    # stops at a residual ‖K v − λ v‖ <= eps·|λ| (tol=0); forming the
    # residual here adds at most N·eps·‖K‖, N = 40.  Each eigenvector is
    # then accurate to that over its eigenvalue gap (Davis–Kahan), so the
    # residual is the check that needs no gap.
    monkeypatch.setattr(cross_entropy_flow, "STIFF_DIRECTIONS", 6)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    kernel = NTK(depth=DEPTH, beta=BETA)(X) + ALPHA * np.eye(40)
    eigenvalues, eigenvectors, bound = cross_entropy_flow.stiff_basis(kernel)
    reference = eigh(kernel, eigvals_only=True)
    scale = reference[-1]
    eps = np.finfo(float).eps
    assert eigenvalues.shape == (6,) and eigenvectors.shape == (40, 6)
    assert_allclose(eigenvalues, reference[-6:], rtol=0, atol=64 * eps * scale)
    assert abs(bound - reference[-7]) <= 64 * eps * scale
    residual = kernel @ eigenvectors - eigenvectors * eigenvalues
    assert np.linalg.norm(residual, axis=0).max() <= 41 * eps * scale
    # Lanczos with ARPACK's reorthogonalisation: orthonormal to O(N·eps).
    assert_allclose(eigenvectors.T @ eigenvectors, np.eye(6), rtol=0, atol=40 * eps)


def test_small_training_sets_treat_every_direction_exactly():
    # Up to 4·STIFF_DIRECTIONS points the dense eigendecomposition gives all
    # N directions and the rest of the space is empty.
    rng = np.random.default_rng(2)
    n_train = 4 * cross_entropy_flow.STIFF_DIRECTIONS
    kernel = NTK(depth=DEPTH, beta=BETA)(rng.normal(size=(n_train, 3)))
    eigenvalues, eigenvectors, bound = cross_entropy_flow.stiff_basis(kernel)
    assert eigenvalues.shape == (n_train,) and bound == 0.0
    flow = cross_entropy_flow.CrossEntropyFlow(kernel, np.eye(3)[np.arange(n_train) % 3])
    assert flow.n_rest == 0 and flow.state_shape == (n_train, 3)


def test_stiff_basis_falls_back_to_lapack_when_lanczos_fails(monkeypatch):
    from scipy.sparse.linalg import ArpackNoConvergence

    def failing_eigsh(*args, **kwargs):
        raise ArpackNoConvergence("no convergence", np.empty(0), np.empty((0, 0)))

    monkeypatch.setattr(cross_entropy_flow, "eigsh", failing_eigsh)
    rng = np.random.default_rng(3)
    kernel = NTK(depth=DEPTH, beta=BETA)(rng.normal(size=(40, 3)))
    eigenvalues, eigenvectors, bound = cross_entropy_flow.stiff_basis(kernel, 6)
    reference = eigh(kernel, eigvals_only=True)
    eps = np.finfo(float).eps
    # LAPACK's eigenvalues: backward stable, a few ulps of the largest.
    assert_allclose(eigenvalues, reference[-6:], rtol=0, atol=64 * eps * reference[-1])
    assert abs(bound - reference[-7]) <= 64 * eps * reference[-1]


@pytest.mark.parametrize("directions", ["all", 4])
def test_a_step_is_of_order_four(data, directions, monkeypatch):
    # Fixed steps over [0, H] with n and 2n steps, against 512 steps: the
    # error falls by 2^4 per halving for a method of order 4 (the step
    # control could hide a lower order).  The rates are refreshed at each
    # step as in the integration.  Measured: log2 ratios 4.06-4.23; the
    # asymptotic regime is reached at these steps, [3.6, 4.4] leaves room
    # for the next term of the error expansion.
    if directions != "all":
        monkeypatch.setattr(cross_entropy_flow, "STIFF_DIRECTIONS", directions)
    X, _, labels = data
    kernel = NTK(depth=DEPTH, beta=BETA)(X) + ALPHA * np.eye(len(X))
    flow = cross_entropy_flow.CrossEntropyFlow(kernel, np.eye(3)[labels])
    span = 40 * flow.unit

    def integrate(n_steps):
        state, slope, rates = flow.initial_state()
        for _ in range(n_steps):
            state = flow._advance(state, slope, rates, span / n_steps)[0]
            slope, probabilities = flow.slope(state)
            rates = flow.decay_rates(probabilities)
        return state

    reference = integrate(512)
    errors = [np.abs(integrate(n) - reference).max() for n in (16, 32, 64)]
    orders = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all((3.6 <= orders) & (orders <= 4.4)), orders
