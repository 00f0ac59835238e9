"""Infinitely wide networks trained by gradient flow, as scikit-learn estimators.

The estimators validate their input, compute the training and cross kernels
(through :mod:`sklearn_ntk._recursion`), hold one factorisation of the
training kernel (:mod:`sklearn_ntk._gradient_flow`, where the mathematics of
the posterior lives) and shape its answers as scikit-learn expects.

Everything that does not depend on t — the training kernels, their
eigendecomposition, the Krylov bases of the targets (which serve every t up
to a ceiling) and the test-versus-train kernels of mean predictions — comes
from module-level functions that ``memory`` (a joblib.Memory) caches, so a
search over t recomputes nothing else.
"""

import inspect
import math
import numbers
import warnings

import joblib
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, gen_batches
from sklearn.utils._chunking import get_chunk_n_rows
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_memory, validate_data

from ._activations import get_activation
from . import _cross_entropy_flow as cross_entropy_flow
from ._cross_entropy_flow import (
    CrossEntropyFlow,
    SegmentSequence,
    class_probabilities,
    flow_segment,
    states_at,
    stiff_basis,
)
from ._gradient_flow import factorize, kernel_scale_exponent
from ._parameters import (
    N_JOBS_CONSTRAINT,
    NETWORK_PARAMETER_CONSTRAINTS,
    PARAMETER_DOCS,
    fill_docstring,
    positive_real,
    public_init,
)
from ._range import checked_range, range_error
from ._recursion import diagonal, kernel_matrices

#: ``solver="auto"`` uses the Krylov bases from this many training samples
#: on: below, the eigendecomposition takes milliseconds and also serves
#: ``return_std`` (``benchmarks/bench_estimators.py --only crossover``: at
#: N = 200 both fits take 20 ms, at N = 500 the Krylov one is 2.4× faster).
AUTO_KRYLOV_MIN_SAMPLES = 500

#: ``solver="auto"`` gives the Lanczos processes N / AUTO_KRYLOV_STEP_FRACTION
#: steps before it switches to the eigendecomposition: a step costs two
#: triangular solves (2 N² flops, memory-bound), the eigendecomposition as
#: much as 90–270 steps at N = 200–1000 on one thread (``--only crossover``),
#: so N/4 steps is about where the Krylov path stops being the cheaper one.
AUTO_KRYLOV_STEP_FRACTION = 4

#: With ``memory`` the cached Krylov bases serve every c up to this value
#: over the median diagonal entry of the training kernel (t up to ~1e6·N/η
#: for unit-scale kernels), so that every t of a search shares them.
CACHED_KRYLOV_TIME_SCALE = 1e6

# ---------------------------------------------------------------------------
# The t-independent work, cached by ``memory``.  These functions take only
# hashable, t-free arguments, so joblib keys them on the training data and the
# kernel parameters; ``n_jobs`` and ``memory`` are excluded from the key.


def _training_kernels(X, depth, activation, beta, weight_std, kind, n_jobs=None):
    """Return (K(X, X), 𝒦(X, X) or None) for kernel regression with ``kind``.

    For the NTK both matrices come out of one pass of the recursion; the
    NNGP kernel is needed for the covariance when all layers are trained.
    """
    requested = "both" if kind == "ntk" else "nngp"
    kernels = kernel_matrices(
        X, depth=depth, activation=activation, beta=beta, weight_std=weight_std,
        kernel=requested, n_jobs=n_jobs,
    )
    if kind == "ntk":
        return kernels.ntk, kernels.nngp
    return kernels.nngp, None


def _cached_eigen_factorization(
    X, depth, activation, beta, weight_std, kind, alpha, n_jobs=None, memory=None,
):
    """Eigendecomposition of K + alpha*I, the kernel coming from ``memory``.

    Only the factorisation is stored here: the NNGP kernel needed for the
    covariance stays in the kernel cache (writing it twice would cost more
    disk time than most of the fit).
    """
    K, _ = _cached(memory, _training_kernels)(
        X, depth, activation, beta, weight_std, kind, n_jobs
    )
    return factorize(K, alpha, finite_time=True)


def _cached_krylov_factorization(
    X, depth, activation, beta, weight_std, kind, alpha, targets, max_time_scale,
    max_steps, n_jobs=None, memory=None,
):
    """Krylov bases of ``targets`` for K + alpha*I, the kernel from ``memory``.

    Keyed on the targets too: different y build different bases.
    """
    K, _ = _cached(memory, _training_kernels)(
        X, depth, activation, beta, weight_std, kind, n_jobs
    )
    return factorize(K, alpha, True, targets=targets, max_time_scale=max_time_scale,
                     max_steps=max_steps)


def _cross_kernel(X, X_train, depth, activation, beta, weight_std, kind, n_jobs=None):
    """K(X, X_train) of ``kind``: the mean prediction's kernel, cached by ``memory``."""
    kernels = kernel_matrices(X, X_train, depth=depth, activation=activation, beta=beta,
                              weight_std=weight_std, kernel=kind, n_jobs=n_jobs)
    return kernels.ntk if kind == "ntk" else kernels.nngp


def _scaled_training_kernel(
    X, depth, activation, beta, weight_std, kind, alpha, n_jobs=None, memory=None,
):
    """(K + alpha*I) / 2^e and e (see ``kernel_scale_exponent``), K from ``memory``.

    The time scales are then multiplied, and the coefficients divided, by 2^e.
    """
    kernel = _cached(memory, _cross_kernel)(
        X, None, depth, activation, beta, weight_std, kind, n_jobs=n_jobs)
    if not kernel.flags.writeable:
        kernel = kernel.copy()  # a memory-mapped array from the cache
    exponent = kernel_scale_exponent(kernel)
    if exponent:
        np.ldexp(kernel, -exponent, out=kernel)
    kernel.flat[::kernel.shape[0] + 1] += math.ldexp(alpha, -exponent)
    return kernel, exponent


def _cached_stiff_basis(
    X, depth, activation, beta, weight_std, kind, alpha, n_directions, kernel=None,
    n_jobs=None, memory=None,
):
    """:func:`stiff_basis` of the scaled K + alpha*I, cached by ``memory``.

    ``kernel``, when given, is that matrix (it is determined by the other
    arguments, so it stays out of the key).
    """
    if kernel is None:
        kernel, _ = _scaled_training_kernel(X, depth, activation, beta, weight_std,
                                            kind, alpha, n_jobs=n_jobs, memory=memory)
    return stiff_basis(kernel, n_directions)


def _cross_entropy_flow(
    X, depth, activation, beta, weight_std, kind, alpha, targets, tolerance,
    n_jobs=None, memory=None,
):
    """(the cross-entropy flow of the scaled K + alpha*I, its exponent e).

    With ``memory`` the kernel and the stiff basis come from the cache.
    """
    kernel, exponent = _scaled_training_kernel(
        X, depth, activation, beta, weight_std, kind, alpha, n_jobs=n_jobs,
        memory=memory)
    basis = _cached(memory, _cached_stiff_basis)(
        X, depth, activation, beta, weight_std, kind, alpha,
        cross_entropy_flow.STIFF_DIRECTIONS, kernel=kernel, n_jobs=n_jobs,
        memory=memory)
    return CrossEntropyFlow(kernel, targets, basis, tolerance), exponent


def _cross_entropy_segment(
    X, depth, activation, beta, weight_std, kind, alpha, targets, tolerance, index,
    flow=None, n_jobs=None, memory=None,
):
    """Segment ``index`` of the cross-entropy flow, each one through ``memory``.

    The previous segment comes from the cache, so a search over t integrates
    every segment of a fold's flow once.  ``flow``, when given, is the flow
    the other arguments determine (built from the cached kernel and stiff
    basis otherwise): one flow serves every segment a call computes.
    """
    if flow is None:
        flow, _ = _cross_entropy_flow(X, depth, activation, beta, weight_std, kind,
                                      alpha, targets, tolerance, n_jobs=n_jobs,
                                      memory=memory)
    previous = None
    if index > 0:
        previous = _cached(memory, _cross_entropy_segment)(
            X, depth, activation, beta, weight_std, kind, alpha, targets, tolerance,
            index - 1, flow=flow, n_jobs=n_jobs, memory=memory,
        )
    return flow_segment(flow, index, previous)


def _cached(memory, function):
    """``function`` through ``memory`` (None: uncached).

    The arguments that say how to compute, not what, stay out of the key
    (``kernel``, ``flow``: objects the other arguments determine, passed to
    save recomputing them).
    """
    if memory is None:
        return function
    arguments = inspect.signature(function).parameters
    ignored = ("n_jobs", "memory", "kernel", "flow")
    return memory.cache(function, ignore=[name for name in ignored if name in arguments])


# ---------------------------------------------------------------------------
# The estimators.


class _BaseGradientFlow(BaseEstimator):
    """Shared fit/predict machinery of the gradient-flow estimators.

    Subclasses set ``_kind``: "ntk" (all layers trained) or "nngp" (readout),
    and repeat ``__init__`` with their own signature, as scikit-learn's
    estimators do, so that a wrong keyword names the public class.

    Fitted state: ``X_train_``, ``_targets`` (N, k), ``_fitted_t`` (the t of
    the fit: predictions stay consistent with it even if ``t`` is changed
    afterwards with set_params), ``_factorization`` (a
    :class:`~sklearn_ntk._gradient_flow.Factorization` of K + αI),
    ``_train_nngp`` (𝒦(X, X) from the same pass, or None when ``memory``
    holds it) and ``_dual_coef`` (N, k).
    """

    _kind = None

    _parameter_constraints: dict = {
        **NETWORK_PARAMETER_CONSTRAINTS,
        "t": [Interval(numbers.Real, 0, None, closed="both")],  # np.inf allowed
        "learning_rate": [positive_real()],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "solver": [StrOptions({"auto", "eigh", "krylov"})],
        "memory": [None, str, HasMethods(["cache"])],
        "n_jobs": N_JOBS_CONSTRAINT,
    }

    def __init__(
        self,
        depth=3,
        activation="relu",
        beta=0.1,
        weight_std=1.0,
        t=np.inf,
        learning_rate=1.0,
        alpha=1e-10,
        solver="auto",
        memory=None,
        n_jobs=None,
    ):
        self.depth = depth
        self.activation = activation
        self.beta = beta
        self.weight_std = weight_std
        self.t = t
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.solver = solver
        self.memory = memory
        self.n_jobs = n_jobs

    # -- fitting -------------------------------------------------------------

    def _fit_targets(self, X, targets):
        """Fit to the 2-D target matrix (n_samples, n_outputs); X is validated."""
        # Resolved once: resolving a callable sets up its quadrature, which
        # every chunk of a prediction would otherwise repeat.
        self._activation = get_activation(self.activation)
        self.X_train_ = X
        self._targets = targets
        self._fitted_t = float(self.t)
        # The kernels raise their own error if they are out of range, and the
        # linear algebra runs at unit scale (see _gradient_flow), so an
        # overflow here means coefficients beyond float64.
        with self._checked_range("The dual coefficients", X):
            time_scale = self._time_scale(self._fitted_t)
            self._factorization, self._train_nngp = self._factorize(
                finite_time=np.isfinite(self._fitted_t), max_time_scale=time_scale
            )
            self._dual_coef = self._factorization.coefficients(targets, [time_scale])[0]
        self._check_finite("The dual coefficients", X, self._dual_coef)
        return self

    def _checked_range(self, what, X):
        """:func:`~sklearn_ntk._range.checked_range` with this network's parameters."""
        return checked_range(what, (X,), self.beta, self.weight_std)

    def _check_finite(self, what, X, *results):
        """Raise the range error if a result is not finite.

        LAPACK and einsum do not report overflow through numpy's error
        state: their results are checked instead (O(size), once).
        """
        for result in results:
            if result is not None and not np.all(np.isfinite(result)):
                raise range_error(f"{what} are not representable in float64",
                                  [X], self.beta, self.weight_std)

    def _factorize(self, finite_time, max_time_scale=None, solver=None):
        """(factorisation of K + αI, 𝒦(X, X) or None), through ``memory``.

        At finite time, the Krylov bases of the targets serving every c up
        to ``max_time_scale`` when :meth:`_krylov_steps` allows them, else
        the eigendecomposition.  ``solver`` overrides the parameter.
        """
        memory = self._usable_memory()
        args = self._kernel_args()
        use_krylov, max_steps = self._krylov_steps(solver)
        if finite_time and use_krylov:
            if memory is not None:
                # One basis for every t of a search: a ceiling that does not
                # depend on t (unless t is beyond it).
                diagonals = diagonal(self.X_train_, **self._network())
                typical = np.median(getattr(diagonals, self._kind)[-1])
                max_time_scale = max(max_time_scale,
                                     CACHED_KRYLOV_TIME_SCALE / max(typical, 1e-300))
                cached = _cached(memory, _cached_krylov_factorization)
                factorization = cached(*args, float(self.alpha), self._targets,
                                       max_time_scale, max_steps, n_jobs=self.n_jobs,
                                       memory=memory)
                return factorization, None
            # Only K: the NNGP kernel is not computed (its N² floats would
            # double the peak memory); the covariance computes it if asked.
            K = _cross_kernel(self.X_train_, None, *args[1:], n_jobs=self.n_jobs)
            return factorize(K, float(self.alpha), True, targets=self._targets,
                             max_time_scale=max_time_scale, max_steps=max_steps), None
        if memory is None:
            K, train_nngp = _training_kernels(*args, n_jobs=self.n_jobs)
            return factorize(K, float(self.alpha), finite_time), train_nngp
        if finite_time:
            cached = _cached(memory, _cached_eigen_factorization)
            factorization = cached(*args, float(self.alpha), n_jobs=self.n_jobs,
                                   memory=memory)
            return factorization, None
        # The Cholesky factor is not stored: it costs about as much to compute
        # (N³/3 flops) as to write to and read back from disk.
        K, _ = _cached(memory, _training_kernels)(*args, n_jobs=self.n_jobs)
        return factorize(K, float(self.alpha), finite_time), None

    def _krylov_steps(self, solver=None):
        """(whether finite t uses the Krylov bases, their step budget or None)."""
        solver = self.solver if solver is None else solver
        n_train = self.X_train_.shape[0]
        if solver == "krylov":
            return True, None
        if solver == "auto" and n_train >= AUTO_KRYLOV_MIN_SAMPLES:
            return True, n_train // AUTO_KRYLOV_STEP_FRACTION
        return False, None

    def _coefficients_at(self, factorization, time_scales):
        """Dual coefficients (T, N, k) at every time scale.

        A factorisation that cannot answer some of them is complemented: a
        Krylov factorisation is extended to larger finite c (or replaced by
        the eigendecomposition beyond its budget), and c = ∞ takes the
        Cholesky factorisation.
        """
        if factorization.supports(time_scales):
            return factorization.coefficients(self._targets, time_scales)
        finite = [c for c in time_scales if np.isfinite(c)]
        infinite = [c for c in time_scales if not np.isfinite(c)]
        answers = {}
        for group, is_finite in ((finite, True), (infinite, False)):
            if not group:
                continue
            answering = factorization
            if not answering.supports(group):
                answering = None
                if is_finite:
                    answering = factorization.extended(max(group),
                                                       self._krylov_steps()[1])
                if answering is None:
                    answering, _ = self._factorize(finite_time=is_finite,
                                                   max_time_scale=max(group))
            for c, coef in zip(group, answering.coefficients(self._targets, group)):
                answers[c] = coef
        return np.stack([answers[c] for c in time_scales])

    def _kernel_args(self):
        """Arguments of _training_kernels; with memory, also its cache key.

        The key holds the activation parameter as given (a name or the user's
        function, which joblib hashes stably), not its resolved form.
        """
        return (self.X_train_, self.depth, self.activation, self.beta,
                self.weight_std, self._kind)

    def _training_nngp(self):
        """𝒦(X_train, X_train), needed by the covariance when all layers train.

        With ``memory`` it is read back from the kernel cache when first
        needed (recomputed if the cache was cleared).
        """
        if self._train_nngp is not None:
            return self._train_nngp
        kernels = _cached(self._usable_memory(), _training_kernels)
        return kernels(*self._kernel_args(), n_jobs=self.n_jobs)[1]

    def _usable_memory(self, warn=True):
        """The joblib.Memory to cache with, or None.

        ``warn=False`` for predictions: ``fit`` has said it once already.
        """
        memory = check_memory(self.memory)
        if memory.location is None:
            return None
        if callable(self.activation):
            try:
                joblib.hash(self.activation)
            except Exception:  # pickling errors of all kinds: no stable key
                if not warn:
                    return None
                warnings.warn(
                    f"memory is ignored: the activation {self.activation!r} cannot "
                    "be pickled, so it has no cache key; use a module-level "
                    "function instead of a lambda or closure.",
                    UserWarning,
                    stacklevel=5,
                )
                return None
        return memory

    def _time_scale(self, t):
        """c = η t / N, the paper's time scale (neural-tangents: N · outputs)."""
        return self.learning_rate * float(t) / self.X_train_.shape[0]

    # -- prediction ----------------------------------------------------------

    def _network(self):
        """Keyword arguments of the kernel computations."""
        return dict(depth=self.depth, activation=self._activation, beta=self.beta,
                    weight_std=self.weight_std)

    def _posterior(self, X, times, return_std=False, return_cov=False):
        """Means (T, m, k), and variances (T, m) or covariances (T, m, m), on X.

        Test points are processed in chunks sized by scikit-learn's
        ``working_memory``; the test × test matrix is only built for
        ``return_cov``.  Every time shares the cross kernels.
        """
        if return_std and return_cov:
            raise RuntimeError(
                "At most one of return_std or return_cov can be requested."
            )
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with self._checked_range("The predictions", X):
            means, spread = self._posterior_in_range(X, times, return_std, return_cov)
        self._check_finite("The predictions", X, means, spread)
        return means, spread

    def _posterior_in_range(self, X, times, return_std, return_cov):
        """:meth:`_posterior` on validated X, under the floating-point checks."""
        time_scales = [self._time_scale(t) for t in times]
        factorization = self._factorization
        spread = return_std or return_cov
        train_nngp = None
        if spread and not (factorization.answers_spread
                           and factorization.supports(time_scales)):
            # The covariance needs the eigendecomposition (Cholesky at c = ∞
            # alone); the means then come from it too.
            factorization, train_nngp = self._factorize(
                finite_time=any(np.isfinite(time_scales)), solver="eigh")
        if list(times) == [self._fitted_t] and factorization is self._factorization:
            dual_coef = self._dual_coef[None]
        else:
            dual_coef = self._coefficients_at(factorization, time_scales)
        if not spread:
            return self._mean_outputs(X, dual_coef), None
        n_times, n_train, n_outputs = dual_coef.shape
        # Times side by side: one product with each chunk's cross kernel.
        dual_coef = dual_coef.transpose(1, 0, 2).reshape(n_train, n_times * n_outputs)

        n_test = X.shape[0]
        means = np.empty((n_test, n_times * n_outputs))
        all_layers = self._kind == "ntk"
        if return_cov:
            # The covariance is n_test × n_test anyway: one chunk.
            batches = [slice(0, n_test)]
        else:
            # Per test row: the cross kernels and up to four temporaries of
            # the variance, each n_train long.
            row_floats = n_train * 6 + n_times * n_outputs
            chunk = get_chunk_n_rows(row_bytes=8 * row_floats, max_n_rows=n_test)
            batches = gen_batches(n_test, chunk)
        if all_layers:
            if train_nngp is None:
                train_nngp = self._training_nngp()
            prepared = factorization.prepare_all_layers(train_nngp, n_times)
        variances = np.empty((n_times, n_test)) if return_std else None
        covariances = None
        for rows in batches:
            kernels = kernel_matrices(
                X[rows], self.X_train_, kernel="both" if all_layers else self._kind,
                n_jobs=self.n_jobs, **self._network(),
            )
            cross = kernels.ntk if self._kind == "ntk" else kernels.nngp
            means[rows] = cross @ dual_coef
            if all_layers:
                change = factorization.all_layers_spread(
                    cross, kernels.nngp, prepared, time_scales, return_cov
                )
            else:
                change = factorization.readout_spread(cross, time_scales, return_cov)
            if return_cov:
                prior = kernel_matrices(X[rows], kernel="nngp", n_jobs=self.n_jobs,
                                        **self._network()).nngp
                covariances = prior[None] + change
            else:
                # 𝒦(x, x) in O(m), without the test × test matrix.
                prior = diagonal(X[rows], **self._network()).nngp[-1]
                variances[:, rows] = prior[None] + change
        means = means.reshape(n_test, n_times, n_outputs).transpose(1, 0, 2)
        if return_std:
            # Rounding leaves tiny negative variances at training points.
            return means, np.sqrt(np.maximum(variances, 0.0))
        return means, 0.5 * (covariances + np.swapaxes(covariances, 1, 2))

    def _mean_outputs(self, X, dual_coef):
        """Network outputs K(X, X_train) a on validated X for every time: (T, m, k).

        ``dual_coef`` (T, N, k) holds the dual coefficients of each time.
        Test points are processed in chunks of ``working_memory``, every time
        sharing the chunk's cross kernel; with ``memory`` the cross kernel is
        cached, so that a search over t computes it once per fold.
        """
        n_times, n_train, n_outputs = dual_coef.shape
        # Times side by side: one product with each chunk's cross kernel.
        dual_coef = dual_coef.transpose(1, 0, 2).reshape(n_train, n_times * n_outputs)
        n_test = X.shape[0]
        outputs = np.empty((n_test, n_times * n_outputs))
        # Per test row: the cross kernel and its workspace, each n_train long.
        chunk = get_chunk_n_rows(row_bytes=8 * (2 * n_train + n_times * n_outputs),
                                 max_n_rows=n_test)
        memory = self._usable_memory(warn=False)
        for rows in gen_batches(n_test, chunk):
            if memory is not None:
                cross = _cached(memory, _cross_kernel)(
                    X[rows], *self._kernel_args(), n_jobs=self.n_jobs)
            else:
                kernels = kernel_matrices(X[rows], self.X_train_, kernel=self._kind,
                                          n_jobs=self.n_jobs, **self._network())
                cross = kernels.ntk if self._kind == "ntk" else kernels.nngp
            outputs[rows] = cross @ dual_coef
        return outputs.reshape(n_test, n_times, n_outputs).transpose(1, 0, 2)

    def _shape(self, mean, spread=None):
        """Give results the output axis exactly when the targets had one.

        1-D targets (and binary classification) drop it.  2-D targets keep
        it even with one column, as KernelRidge does, so that predictions,
        spreads and ``dual_coef_`` agree; GaussianProcessRegressor drops it
        from its predictions but not from ``alpha_``.  Outputs are
        independent with the same kernel: the same spread for each, in
        GaussianProcessRegressor's multi-target shapes.
        """
        if self._one_dimensional_output:
            mean = mean[..., 0]
        if spread is None:
            return mean
        if not self._one_dimensional_output:
            spread = np.repeat(spread[..., None], self._targets.shape[1], axis=-1)
        return mean, spread

    def _check_times(self, times):
        times = check_array(
            times, ensure_2d=False, dtype=np.float64, ensure_all_finite=False,
            input_name="times",
        )
        if times.ndim != 1 or np.isnan(times).any() or (times < 0).any():
            raise ValueError(
                "times must be a 1-D array of times t >= 0 (np.inf allowed), "
                f"got {times!r}."
            )
        return times

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


_ESTIMATOR_PARAMETER_DOCS = {
    "X_train_": """X_train_ : ndarray of shape (n_samples, n_features)
    Training inputs (needed for prediction).""",
    "features_in_": """n_features_in_ : int
    Number of features seen during fit.
feature_names_in_ : ndarray of shape (``n_features_in_``,)
    Names of features seen during fit, when X has string column names.""",
    "activation": """activation : str or callable, default="relu"
    %(activations)s
    or a vectorised callable; see
    :class:`~sklearn_ntk.NTK`.""",
    "t": """t : float, default=np.inf
    Training time of gradient flow. ``np.inf`` is the converged network
    (kernel regression), 0 the untrained network (mean 0, prior
    covariance). A finite t acts as a regulariser: directions of small
    kernel eigenvalue are fitted last (early stopping).""",
    "learning_rate": """learning_rate : float, default=1.0
    Learning rate η of gradient flow: only the product η·t matters, the
    time scale being c = η·t / n_samples.""",
    "alpha": """alpha : float, default=1e-10
    Added to the diagonal of the training kernel, as in
    :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
    (observation noise variance; ensures a positive definite matrix).""",
    "solver": """solver : {"auto", "eigh", "krylov"}, default="auto"
    How the mean at a finite ``t`` is computed (``t=np.inf`` always uses
    a Cholesky factorisation).

    - "eigh": one symmetric eigendecomposition of the training kernel
      (about 20 times the cost of a Cholesky factorisation), shared by
      every time, output, mean and covariance.
    - "krylov": one Cholesky factorisation of the shifted kernel and a
      shift-and-invert Lanczos process per output, stopped when its
      estimated relative error is below 1e-10 for every time up to
      ``t`` (extended on demand for later times); see the user guide.
    - "auto": "krylov" from 500 training samples on, falling back to
      "eigh" when the Lanczos processes would need more than
      n_samples / 4 steps; "eigh" below 500 samples.

    ``return_std`` and ``return_cov`` at finite t always use the
    eigendecomposition: with "krylov" or "auto" each such call computes
    one (cached with ``memory``).""",
    "memory": """memory : None, str or joblib.Memory, default=None
    Caches the training kernels and their eigendecomposition or Krylov
    bases, keyed on the training data and the kernel parameters (not on
    ``t`` or ``learning_rate``; the Krylov bases also on the targets,
    built for every t up to 1e6 · n_samples / (learning_rate · k) with k
    the median diagonal entry of the kernel), and the kernels between
    test and training points of mean predictions (8 · n_test ·
    n_samples bytes on disk per test set), as ``memory`` of
    :class:`~sklearn.pipeline.Pipeline`: a search over ``t`` then
    computes one kernel and one factorisation per fold. The Cholesky
    factor used at ``t=np.inf`` is recomputed from the cached kernel (it
    costs about as much as reading it back). A string is the path of the
    cache directory.""",
}

#: The Parameters section every gradient-flow estimator's docstring starts
#: with (its ``%(parameters)s`` line); a class adds its own entries after it.
_PARAMETER_ORDER = ("depth", "activation", "beta", "weight_std", "t", "learning_rate",
                    "alpha", "solver", "memory", "n_jobs")


def _doc(cls):
    """Fill an estimator's docstring: the shared sections and entries."""
    entries = {**PARAMETER_DOCS, **_ESTIMATOR_PARAMETER_DOCS}
    parameters = "\n".join(["Parameters", "----------"]
                           + [entries[name] for name in _PARAMETER_ORDER])
    kernel = {"ntk": "Θ", "nngp": "𝒦"}[cls._kind]
    regressor_attributes = "\n".join([
        "Attributes", "----------", entries["X_train_"],
        "y_train_ : ndarray of shape (n_samples,) or (n_samples, n_targets)",
        "    Training targets.",
        "dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)",
        f"    Coefficients of the mean prediction: ``{kernel}(X, X_train_) @ dual_coef_``.",
        entries["features_in_"],
    ])
    return fill_docstring(cls, {**_ESTIMATOR_PARAMETER_DOCS, "parameters": parameters,
                                "regressor_attributes": regressor_attributes})


class _BaseRegressor(RegressorMixin, _BaseGradientFlow):
    """Regression: the mean, std and covariance of the trained ensemble."""

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the infinitely wide network by gradient flow for time ``t``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64)
        y = self._numeric_targets(y)
        self.y_train_ = y
        self._one_dimensional_output = y.ndim == 1
        self._fit_targets(X, y.reshape(y.shape[0], -1))
        self.dual_coef_ = self._shape(self._dual_coef)
        return self

    def _numeric_targets(self, y):
        """y as float64; numeric strings are converted, as KernelRidge and Ridge do.

        Done once here, so that every t (a Cholesky solve or a product with
        eigenvectors) sees the same numbers or the same error.
        """
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            for value in np.ravel(y):
                try:
                    float(value)
                except (TypeError, ValueError):
                    break
            if isinstance(value, bytes):
                value, kind = value.decode(errors="replace"), "string"
            elif isinstance(value, str):
                # A plain str, not numpy's np.str_('a') repr.
                value, kind = str(value), "string"
            else:
                kind = "value"
            raise ValueError(
                f"{type(self).__name__} needs numeric targets y (numbers or numeric "
                f"strings) but could not convert {kind} to float: {value!r}. For "
                "class labels use NTKClassifier."
            ) from None
        # Strings such as "nan" only become non-finite now.
        return check_array(
            y, ensure_2d=False, dtype=np.float64, input_name="y", estimator=self
        )

    def predict(self, X, return_std=False, return_cov=False):
        """Mean prediction of the trained ensemble, and its std or covariance.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.
        return_std : bool, default=False
            Also return the standard deviation over random initialisations.
            Test points are processed in chunks sized by scikit-learn's
            ``working_memory`` (:func:`sklearn.set_config`); no
            n_samples × n_samples matrix is formed.
        return_cov : bool, default=False
            Also return the covariance over random initialisations.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
            With 2-D training targets, 2-D even for one column (as
            :class:`~sklearn.kernel_ridge.KernelRidge`).
        y_std : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Only with ``return_std``.
        y_cov : ndarray of shape (n_samples, n_samples) or \
                (n_samples, n_samples, n_targets)
            Only with ``return_cov``.
        """
        check_is_fitted(self)
        mean, spread = self._posterior(X, [self._fitted_t], return_std, return_cov)
        if spread is None:
            return self._shape(mean[0])
        return self._shape(mean[0], spread[0])

    def staged_predict(self, X, times, return_std=False, return_cov=False):
        """Predictions at every training time in ``times``: the early-stopping path.

        All finite times share one factorisation of the training kernel (the
        Krylov bases, extended to the largest time if needed, or the
        eigendecomposition) and one evaluation of the cross kernel, so the
        whole path costs about one prediction.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.
        times : array-like of shape (n_times,)
            Training times t >= 0 (``np.inf`` allowed).
        return_std, return_cov : bool, default=False
            As in :meth:`predict`.

        Returns
        -------
        y_mean : ndarray of shape (n_times, n_samples) or \
                (n_times, n_samples, n_targets)
            ``y_mean[i]`` equals ``predict(X)`` with ``t=times[i]``.
        y_std or y_cov : ndarray
            With ``return_std`` or ``return_cov``: one leading axis of
            length n_times in front of :meth:`predict`'s shapes.
        """
        check_is_fitted(self)
        mean, spread = self._posterior(X, self._check_times(times), return_std,
                                       return_cov)
        return self._shape(mean, spread)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


@public_init
@_doc
class NTKRegressor(_BaseRegressor):
    """Infinitely wide network with all layers trained by gradient flow.

    The mean (over random initialisations) of a fully-connected network of
    infinite width trained by gradient flow on the squared loss for time
    ``t``, and its standard deviation or covariance: kernel gradient descent
    with the Neural Tangent Kernel Θ (Jacot et al. 2018; Lee et al. 2019).
    At ``t=np.inf`` the mean is kernel ridge regression with Θ and ridge
    ``alpha``.

    %(parameters)s

    %(regressor_attributes)s

    See Also
    --------
    NNGPRegressor : Only the readout layer trained (the NNGP kernel).
    NTKClassifier : Classification through regression on encoded labels.

    Notes
    -----
    With :math:`\\Theta + \\alpha I = V \\operatorname{diag}(\\lambda) V^\\top`
    and :math:`c = \\eta t / N` the mean is
    :math:`\\Theta(x, X) V \\operatorname{diag}((1 - e^{-c\\lambda})/\\lambda)
    V^\\top y`; the covariance is Lee et al.'s
    (2019) with the NNGP kernel as the prior. At ``t=np.inf`` the mean uses a
    Cholesky factorisation, at finite t Krylov bases or one symmetric
    eigendecomposition (``solver``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntk import NTKRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 3))
    >>> y = np.sin(X[:, 0])
    >>> reg = NTKRegressor(depth=3).fit(X, y)
    >>> float(np.abs(reg.predict(X) - y).max()) < 1e-6
    True
    >>> early = NTKRegressor(depth=3, t=10.0).fit(X, y)
    >>> mean, std = early.predict(X[:2], return_std=True)
    >>> mean.shape, std.shape
    ((2,), (2,))
    >>> early.staged_predict(X[:2], [0.0, 10.0, np.inf]).shape
    (3, 2)
    """

    _kind = "ntk"



@public_init
@_doc
class NNGPRegressor(_BaseRegressor):
    """Infinitely wide network with only the readout layer trained.

    Training only the last layer of an infinitely wide network by gradient
    flow is kernel gradient descent with the NNGP kernel 𝒦; at ``t=np.inf``
    the ensemble's mean and covariance are the posterior of the Gaussian
    process with kernel 𝒦 and noise variance ``alpha``, exactly
    ``GaussianProcessRegressor(kernel=NNGP(...), alpha=alpha,
    optimizer=None)``.

    %(parameters)s

    %(regressor_attributes)s

    See Also
    --------
    NTKRegressor : All layers trained (the Neural Tangent Kernel).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntk import NNGPRegressor
    >>> X = np.linspace(-1, 1, 8)[:, None]
    >>> reg = NNGPRegressor(depth=2, alpha=1e-6).fit(X, X[:, 0] ** 2)
    >>> mean, std = reg.predict([[0.1], [2.0]], return_std=True)
    >>> bool(std[0] < std[1])
    True
    >>> prior_mean, prior_cov = NNGPRegressor(t=0.0).fit(X, X[:, 0]).predict(
    ...     X[:2], return_cov=True)
    >>> prior_mean
    array([0., 0.])
    """

    _kind = "nngp"



def _uses_log_loss(estimator):
    return estimator.loss == "log_loss"


@_doc
class NTKClassifier(ClassifierMixin, _BaseGradientFlow):
    """Classifier: an infinitely wide network trained on the class labels.

    With ``loss="squared_error"`` (the default) each class is one output of
    an :class:`NTKRegressor` (all layers trained for time ``t``) fitted to
    the labels encoded as in :class:`~sklearn.linear_model.RidgeClassifier`:
    +1 for the sample's class and -1 for the others (binary problems: one
    output, +1 for ``classes_[1]``). The predicted class has the largest
    mean output; at ``t=0`` every output is 0 and ``classes_[0]`` is
    predicted.

    With ``loss="log_loss"`` the network is trained as classifiers are, by
    gradient flow on the cross-entropy, starting from a zero output: one
    output and the logistic link for two classes (as
    :class:`~sklearn.linear_model.LogisticRegression`), one output per class
    and the softmax otherwise. :meth:`predict_proba` gives the network's
    probabilities, uniform at ``t=0``; ``t`` must be finite (on separable
    data the outputs grow without bound as t grows).

    %(parameters)s
    loss : {"squared_error", "log_loss"}, default="squared_error"
        The training cost: the squared error on ±1-encoded labels (a closed
        form) or the cross-entropy (an ODE integrated by an exponential
        integrator along the training kernel's 64 largest eigenpairs, each
        step's error below ``tol``; see the user guide),
        with which ``t`` must be finite and ``solver`` does not apply.
        With ``memory``, the eigenpairs and the integrated flow are cached
        too (keyed on the targets, in segments, four per doubling of the
        time), so a search over ``t`` integrates each fold's flow once.
    tol : float, default=1e-7
        Only with ``loss="log_loss"``: the integrator's local error per
        step in the network's outputs, at a point of average kernel diagonal
        (see the user guide).  The probabilities came out within 1 to 9
        times ``tol`` of a reference solution; the number of steps grows
        like ``tol ** -0.25``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    %(X_train_)s
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_classes)
        Coefficients of :meth:`decision_function`.
    %(features_in_)s

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_ntk import NTKClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NTKClassifier(depth=2, t=1e3).fit(X, y)
    >>> clf.classes_
    array([0, 1, 2])
    >>> clf.decision_function(X[:2]).shape
    (2, 3)
    >>> bool(clf.score(X, y) > 0.9)
    True
    >>> proba = NTKClassifier(depth=2, t=1e3, loss="log_loss").fit(X, y)
    >>> proba.predict_proba(X[:2]).shape
    (2, 3)
    >>> proba.staged_predict_proba(X[:1], [0.0, 1e3]).round(2)[0]
    array([[0.33, 0.33, 0.33]])
    """

    _kind = "ntk"

    _parameter_constraints: dict = {
        **_BaseGradientFlow._parameter_constraints,
        "loss": [StrOptions({"squared_error", "log_loss"})],
        "tol": [Interval(numbers.Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        depth=3,
        activation="relu",
        beta=0.1,
        weight_std=1.0,
        t=np.inf,
        learning_rate=1.0,
        alpha=1e-10,
        solver="auto",
        memory=None,
        n_jobs=None,
        loss="squared_error",
        tol=1e-7,
    ):
        super().__init__(
            depth=depth, activation=activation, beta=beta, weight_std=weight_std,
            t=t, learning_rate=learning_rate, alpha=alpha, solver=solver,
            memory=memory, n_jobs=n_jobs,
        )
        self.loss = loss
        self.tol = tol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the network to the class labels by gradient flow for time ``t``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if _uses_log_loss(self) and not np.isfinite(self.t):
            raise ValueError(self._infinite_time_message("t=np.inf"))
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self._label_binarizer = LabelBinarizer(neg_label=-1, pos_label=1)
        Y = self._label_binarizer.fit_transform(y).astype(np.float64)
        self.classes_ = self._label_binarizer.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                "NTKClassifier needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {self.classes_[0]!r}."
            )
        self._one_dimensional_output = Y.shape[1] == 1
        if _uses_log_loss(self):
            self._fit_log_loss(X, (Y > 0).astype(np.float64))
        else:
            self._fit_targets(X, Y)
        self.dual_coef_ = self._shape(self._dual_coef)
        return self

    def _infinite_time_message(self, what):
        return (
            f"{what} is not available with loss='log_loss': on data the kernel "
            "separates, gradient flow on the cross-entropy has no limit (the "
            "outputs grow like log t and the probabilities tend to 0 and 1). "
            "Give a finite training time, e.g. t=1e3, and tune it as a "
            "regulariser (early stopping)."
        )

    # -- the cross-entropy flow ------------------------------------------------

    def _fit_log_loss(self, X, targets):
        """Integrate the flow to the fitted time; ``targets`` one-hot (or 0/1)."""
        self._activation = get_activation(self.activation)
        self.X_train_ = X
        self._targets = targets
        self._fitted_t = float(self.t)
        self._flow_segments = None
        with self._checked_range("The dual coefficients", X):
            self._dual_coef = self._log_loss_coefficients([self._fitted_t])[0]
        self._check_finite("The dual coefficients", X, self._dual_coef)

    def _log_loss_coefficients(self, times):
        """Dual coefficients a_t at every time, shape (T, N, C), from one trajectory.

        Without ``memory`` the flow and the segments are computed here, and
        the ends of those computed are kept for later predictions; with it,
        the kernel, the stiff basis and each segment are read from (or
        written to) the cache.
        """
        memory = self._usable_memory()
        args = (*self._kernel_args(), float(self.alpha), self._targets,
                float(self.tol))
        if memory is None:
            if self._flow_segments is None:
                flow, self._flow_scale_exponent = _cross_entropy_flow(
                    *args, n_jobs=self.n_jobs)
                self._flow_segments = SegmentSequence(flow)
            flow, exponent = self._flow_segments.flow, self._flow_scale_exponent
            segment_of = self._flow_segments
        else:
            flow, exponent = _cross_entropy_flow(*args, n_jobs=self.n_jobs,
                                                 memory=memory)
            cached = _cached(memory, _cross_entropy_segment)

            def segment_of(index):
                return cached(*args, index, flow=flow, n_jobs=self.n_jobs,
                              memory=memory)

        time_scales = [math.ldexp(self._time_scale(t), exponent) for t in times]
        coefficients = flow.coefficients(states_at(flow, time_scales, segment_of))
        return np.ldexp(coefficients, -exponent)

    def _log_loss_decision(self, X, times):
        """Network outputs (T, m, C) on X after training for every time."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with self._checked_range("The predictions", X):
            if list(times) == [self._fitted_t]:
                dual_coef = self._dual_coef[None]
            else:
                dual_coef = self._log_loss_coefficients(times)
            outputs = self._mean_outputs(X, dual_coef)
        self._check_finite("The predictions", X, outputs)
        return outputs

    def _check_finite_times(self, times):
        times = self._check_times(times)
        if _uses_log_loss(self) and not np.all(np.isfinite(times)):
            raise ValueError(self._infinite_time_message("A time np.inf in times"))
        return times

    # -- prediction ------------------------------------------------------------

    def _outputs(self, X, times):
        if _uses_log_loss(self):
            return self._log_loss_decision(X, times)
        return self._posterior(X, times)[0]

    def decision_function(self, X):
        """Network output for each class (binary: for ``classes_[1]``).

        With ``loss="squared_error"`` the mean output of the ensemble, with
        ``loss="log_loss"`` the output whose logistic function or softmax
        is :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._shape(self._outputs(X, [self._fitted_t])[0])

    def staged_decision_function(self, X, times):
        """:meth:`decision_function` at every training time in ``times``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        times : array-like of shape (n_times,)
            Training times t >= 0 (``np.inf`` allowed with the squared error).

        Returns
        -------
        scores : ndarray of shape (n_times, n_samples) or \
                (n_times, n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._shape(self._outputs(X, self._check_finite_times(times)))

    @available_if(_uses_log_loss)
    def predict_proba(self, X):
        """Class probabilities of the network trained on the cross-entropy.

        Only with ``loss="log_loss"``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        return class_probabilities(self._outputs(X, [self._fitted_t])[0])

    @available_if(_uses_log_loss)
    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return np.log(self.predict_proba(X))

    @available_if(_uses_log_loss)
    def staged_predict_proba(self, X, times):
        """:meth:`predict_proba` at every training time in ``times``.

        Every time comes from one integration of the flow (and one
        evaluation of the cross kernel).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        times : array-like of shape (n_times,)
            Finite training times t >= 0.

        Returns
        -------
        proba : ndarray of shape (n_times, n_samples, n_classes)
        """
        check_is_fitted(self)
        outputs = self._outputs(X, self._check_finite_times(times))
        return np.stack([class_probabilities(at_t) for at_t in outputs])

    def predict(self, X):
        """Class with the largest network output.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        return self._labels(self.decision_function(X))

    def staged_predict(self, X, times):
        """:meth:`predict` at every training time in ``times``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        times : array-like of shape (n_times,)

        Returns
        -------
        y_pred : ndarray of shape (n_times, n_samples)
        """
        scores = self.staged_decision_function(X, times)
        return np.stack([self._labels(scores_at_t) for scores_at_t in scores])

    def _labels(self, scores):
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]
