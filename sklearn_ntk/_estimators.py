"""Infinitely wide networks trained by gradient flow, as scikit-learn estimators.

A network in the infinite-width limit trained by gradient flow on the squared
loss C(f) = 1/(2N) Σᵢ ‖f(xᵢ) − yᵢ‖² follows kernel gradient descent with a
constant kernel K: the NTK Θ when every layer is trained, the NNGP kernel 𝒦
when only the readout is.  Averaged over random initialisations its output at
time t is Gaussian with a closed-form mean and covariance (Lee et al. 2019,
SPEC.md).  With K + αI = V diag(λ) Vᵀ and c = η t / N,

    φ_c(λ) = (1 − e^{−cλ}) / λ          (= c at λ = 0)
    mean   = K(x, X) V diag(φ_c(λ)) Vᵀ y

so one symmetric eigendecomposition of the training kernel serves every
output, every time t and both mean and covariance.  At t = ∞ the mean is
kernel regression K(x, X) (K + αI)⁻¹ y, solved with a Cholesky factorisation.

Everything that does not depend on t or on y — the training kernels and their
decomposition — is computed by module-level functions that ``memory`` (a
joblib.Memory) caches, so a search over t recomputes nothing else.
"""

import math
import numbers
import warnings

import joblib
import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, gen_batches
from sklearn.utils._chunking import get_chunk_n_rows
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_memory, validate_data

from ._kernels import NETWORK_PARAMETER_CONSTRAINTS, check_network_params
from ._range import checked_range, power_of_two_exponent, range_error
from ._recursion import diagonal, kernel_matrices

#: LAPACK driver of the symmetric eigendecomposition.  Measured with
#: ``benchmarks/bench_estimators.py --only drivers`` on an NTK Gram matrix
#: (OpenBLAS, one thread, medians of interleaved runs; n = 2000 / 4000):
#: divide and conquer "evd" 2.1 s / 30 s, the same as numpy.linalg.eigh (the
#: same LAPACK routine), "evr" (MRRR) 2.7 s / 26 s but with eigenvectors
#: orthogonal only to 1e-10 instead of 5e-15, "ev" (QR) 12 s at n = 2000.
#: "evd" is the fastest driver that keeps full accuracy.
EIGH_DRIVER = "evd"

#: The linear algebra runs on K / 2^e, with 2^e ~ the largest diagonal entry
#: of the training kernel, when that is outside 2^±128: K + αI, its
#: products with the cross kernels and the covariances then stay far from
#: overflow and underflow at any kernel scale.  The rescaling is exact
#: (α and the time scale c = ηt/N absorb it: α/2^e, c·2^e), so predictions
#: do not change; means are invariant, covariances scale back by 2^e.
UNSCALED_KERNEL_EXPONENTS = 128


class SingularKernelWarning(UserWarning):
    """The training kernel K + alpha*I is singular to working precision.

    Raised at ``t = inf`` when the Cholesky factorisation fails (duplicated
    training points with ``alpha = 0``, say); the estimator then uses the
    pseudo-inverse of K + alpha*I, i.e. the minimum-norm interpolant, which is
    also the limit of the finite-t predictions as t → ∞.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from sklearn_ntk import NTKRegressor, SingularKernelWarning
    >>> X = np.array([[0.3, 1.0], [0.3, 1.0], [1.0, 0.0], [2.0, 1.0]])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     model = NTKRegressor(alpha=0.0).fit(X, [1.0, 1.0, 2.0, 3.0])
    ...     prediction = model.predict(X)
    >>> [w.category.__name__ for w in caught]
    ['SingularKernelWarning']
    >>> prediction.round(6)
    array([1., 1., 2., 3.])
    """


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


def _decompose(K, alpha, method):
    """Factorise K + alpha*I, overwriting K; return a dict describing the factor.

    ``method`` is "cholesky" (t = inf) or "eigh" (finite t).  A Cholesky
    factorisation that fails falls back to the eigendecomposition, with a
    :class:`SingularKernelWarning`.

    K is symmetric, so its transpose is the same matrix in Fortran order:
    LAPACK then works in place instead of on a copy.  The Cholesky factor
    U (K + αI = UᵀU) fills one triangle of that view and leaves the other
    intact, which is all the eigendecomposition fallback reads.
    """
    A = K.T
    # K + αI = 2^e (K/2^e + (α/2^e) I): see UNSCALED_KERNEL_EXPONENTS.
    exponent = power_of_two_exponent(np.max(A.diagonal(), initial=0.0))
    if abs(exponent) <= UNSCALED_KERNEL_EXPONENTS:
        exponent = 0
    if exponent:
        np.ldexp(A, -exponent, out=A)
    diagonal = A.diagonal() + np.ldexp(alpha, -exponent)
    np.fill_diagonal(A, diagonal)
    if method == "cholesky":
        try:
            factor, _ = linalg.cho_factor(
                A, lower=False, overwrite_a=True, check_finite=False
            )
            return {"cholesky": factor, "scale_exponent": exponent}
        except linalg.LinAlgError:
            warnings.warn(
                "The training kernel K + alpha*I is not positive definite to "
                f"working precision (alpha={alpha!r}; duplicated training points?). "
                "Using its pseudo-inverse, the minimum-norm solution, instead of "
                "a Cholesky solve; increase alpha to regularise.",
                SingularKernelWarning,
                stacklevel=2,
            )
            np.fill_diagonal(A, diagonal)
    eigenvalues, eigenvectors = linalg.eigh(
        A, lower=True, driver=EIGH_DRIVER, overwrite_a=True, check_finite=False
    )
    # Rounding can push eigenvalues of a positive semi-definite matrix just
    # below 0; the gradient flow does not move along those directions.
    np.maximum(eigenvalues, 0.0, out=eigenvalues)
    return {"eigenvalues": eigenvalues, "eigenvectors": eigenvectors,
            "scale_exponent": exponent}


def _cached_eigendecomposition(
    X, depth, activation, beta, weight_std, kind, alpha, n_jobs=None, memory=None,
):
    """Eigendecomposition of K + alpha*I, the kernel coming from ``memory``.

    Only eigenvalues and eigenvectors are stored: the NNGP kernel needed for
    the covariance stays in the kernel cache (writing it twice would cost
    more disk time than most of the fit).
    """
    kernels = memory.cache(_training_kernels, ignore=["n_jobs"])
    K, _ = kernels(X, depth, activation, beta, weight_std, kind, n_jobs)
    return _decompose(K, alpha, "eigh")


# ---------------------------------------------------------------------------
# Spectral filters of kernel gradient descent.


def _pseudo_inverse_cutoff(eigenvalues):
    """Eigenvalues at or below this count as 0 in a pseudo-inverse (as pinvh)."""
    largest = eigenvalues[-1] if eigenvalues.size else 0.0
    return largest * eigenvalues.size * np.finfo(float).eps


def _phi(eigenvalues, c):
    """φ_c(λ) = (1 − e^{−cλ})/λ, with its limits c at λ = 0 and 1/λ at c = ∞.

    ``-expm1(-cλ)`` keeps full relative accuracy when cλ is tiny, where
    ``1 - exp(-cλ)`` would cancel.  At c = ∞ eigenvalues below the
    pseudo-inverse cutoff are dropped (the flow never reaches them).
    """
    if np.isinf(c):
        phi = np.zeros_like(eigenvalues)
        keep = eigenvalues > _pseudo_inverse_cutoff(eigenvalues)
        phi[keep] = 1.0 / eigenvalues[keep]
        return phi
    phi = np.full_like(eigenvalues, c)
    positive = eigenvalues > 0
    lam = eigenvalues[positive]
    phi[positive] = -np.expm1(-c * lam) / lam
    return phi


def _scaled_time(c, exponent):
    """c·2^e, the time scale for the factorisation of (K + αI)/2^e.

    Beyond float64 it is infinite: e^{-cλ} is 0 for every λ > 0 then anyway.
    """
    try:
        return math.ldexp(c, exponent)
    except OverflowError:
        return math.inf


# ---------------------------------------------------------------------------
# The estimators.


class _BaseGradientFlow(BaseEstimator):
    """Shared fit/predict machinery of the gradient-flow estimators.

    Subclasses set ``_kind``: "ntk" (all layers trained) or "nngp" (readout).
    """

    _kind = None

    _parameter_constraints: dict = {
        **NETWORK_PARAMETER_CONSTRAINTS,
        "t": [Interval(numbers.Real, 0, None, closed="both")],  # np.inf allowed
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "memory": [None, str, HasMethods(["cache"])],
        "n_jobs": [None, numbers.Integral],
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
        self.memory = memory
        self.n_jobs = n_jobs

    # -- fitting -------------------------------------------------------------

    def _network(self):
        """(depth, activation, beta, weight_std) for the kernel computations.

        The activation is resolved once, at fit: resolving a callable sets up
        its quadrature, which every chunk of a prediction would otherwise
        repeat.
        """
        return self._depth, self._activation, self._beta, self._weight_std

    def _fit_targets(self, X, Y):
        """Fit to the 2-D target matrix Y (n_samples, n_outputs)."""
        self._depth, self._activation, self._beta, self._weight_std = (
            check_network_params(
                self.depth, self.activation, self.beta, self.weight_std
            )
        )
        self.X_train_ = X
        method = "cholesky" if np.isinf(self.t) else "eigh"
        # The kernels raise their own error if they are out of range; the
        # linear algebra runs on them scaled to unit size (_decompose), so an
        # overflow here means coefficients beyond float64.
        with self._checked_range("The dual coefficients", X):
            self._state = self._decomposition(method)
            self._Y_train = Y
            if method == "eigh":
                # Vᵀy: projections of the targets on the eigenvectors, shared
                # by every time of staged_predict.
                V = self._state["eigenvectors"]
                self._state["projected_targets"] = V.T @ Y
            # The time of the fit: predict stays consistent with the fitted
            # state even if t is changed afterwards with set_params.
            self._fitted_t = float(self.t)
            c = self._time_scale(self._fitted_t)
            self._coef = self._dual_coef(self._state, Y, [c])
        self._check_finite("The dual coefficients", X, self._coef)
        return self

    def _checked_range(self, what, *arrays):
        """:func:`checked_range` with this estimator's network parameters."""
        return checked_range(what, arrays, self._beta, self._weight_std)

    def _check_finite(self, what, X, *results):
        """Raise the range error if a result is not finite.

        LAPACK and einsum do not report overflow through numpy's error
        state: their results are checked instead (O(size), once).
        """
        for result in results:
            if result is not None and not np.all(np.isfinite(result)):
                raise range_error(
                    f"{what} are not representable in float64",
                    [X], self._beta, self._weight_std,
                )

    def _decomposition(self, method):
        """The training decomposition for ``method``, through ``memory``."""
        memory = self._usable_memory()
        args = self._kernel_args()
        if memory is None:
            K, nngp = _training_kernels(*args, n_jobs=self.n_jobs)
            state = _decompose(K, float(self.alpha), method)
            state["nngp"] = nngp  # from the same pass: keep it
            return state
        if method == "eigh":
            cached = memory.cache(_cached_eigendecomposition, ignore=["n_jobs", "memory"])
            return cached(*args, float(self.alpha), n_jobs=self.n_jobs, memory=memory)
        # The Cholesky factor is not stored: it costs about as much to compute
        # (N³/3 flops) as to write to and read back from disk.
        kernels = memory.cache(_training_kernels, ignore=["n_jobs"])
        K, _ = kernels(*args, n_jobs=self.n_jobs)  # a fresh copy: ours to overwrite
        return _decompose(K, float(self.alpha), "cholesky")

    def _kernel_args(self):
        """Arguments of _training_kernels; with memory, also its cache key.

        The key holds the activation parameter as given (a name or the user's
        function, which joblib hashes stably), not its resolved form.
        """
        depth, _, beta, weight_std = self._network()
        return (self.X_train_, depth, self.activation, beta, weight_std, self._kind)

    def _train_nngp(self, state):
        """𝒦(X_train, X_train), needed by the covariance when all layers train.

        With ``memory`` it is read back from the kernel cache when first
        needed (recomputed if the cache was cleared).
        """
        if state.get("nngp") is not None:
            return state["nngp"]
        memory = self._usable_memory()
        args = self._kernel_args()
        if memory is None:
            return _training_kernels(*args, n_jobs=self.n_jobs)[1]
        kernels = memory.cache(_training_kernels, ignore=["n_jobs"])
        return kernels(*args, n_jobs=self.n_jobs)[1]

    def _usable_memory(self):
        """The joblib.Memory to cache with, or None."""
        memory = check_memory(self.memory)
        if memory.location is None:
            return None
        if callable(self.activation):
            try:
                joblib.hash(self.activation)
            except Exception:  # pickling errors of all kinds: no stable key
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

    @staticmethod
    def _dual_coef(state, Y, cs):
        """Coefficients a with mean(x) = K(x, X) a for every time scale in cs.

        Returns shape (n_train, len(cs) * n_outputs), times side by side.
        The factorisation is of (K + αI)/2^e: (K + αI)⁻¹ = 2^-e (·)⁻¹, and
        φ_c(λ) = 2^-e φ_{c 2^e}(λ / 2^e).
        """
        exponent = state.get("scale_exponent", 0)
        if "cholesky" in state:
            coef = linalg.cho_solve((state["cholesky"], False), Y, check_finite=False)
            return np.ldexp(np.tile(coef, len(cs)), -exponent)
        V = state["eigenvectors"]
        projected = state.get("projected_targets")
        if projected is None:
            projected = V.T @ Y
        filtered = [
            _phi(state["eigenvalues"], _scaled_time(c, exponent))[:, None] * projected
            for c in cs
        ]
        # One product with V for all times: V is read from memory once.
        return np.ldexp(V @ np.hstack(filtered), -exponent)

    # -- prediction ----------------------------------------------------------

    def _validate_test(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

    def _cross_kernels(self, X, want_nngp):
        """K(X, X_train) and, if asked (NTK mode), 𝒦(X, X_train)."""
        depth, activation, beta, weight_std = self._network()
        requested = self._kind if not want_nngp else "both"
        kernels = kernel_matrices(
            X, self.X_train_, depth=depth, activation=activation, beta=beta,
            weight_std=weight_std, kernel=requested, n_jobs=self.n_jobs,
        )
        K = kernels.ntk if self._kind == "ntk" else kernels.nngp
        return K, kernels.nngp

    def _prior_variance(self, X):
        """𝒦(x, x) for every row of X in O(n), without the test × test matrix."""
        depth, activation, beta, weight_std = self._network()
        return diagonal(
            X, depth=depth, activation=activation, beta=beta, weight_std=weight_std
        ).nngp[-1]

    def _prior_covariance(self, X):
        depth, activation, beta, weight_std = self._network()
        return kernel_matrices(
            X, depth=depth, activation=activation, beta=beta, weight_std=weight_std,
            kernel="nngp", n_jobs=self.n_jobs,
        ).nngp

    def _posterior(self, X, cs, state, coefs, return_std, return_cov):
        """Means (and variances or covariances) on X for each time scale in cs.

        ``coefs`` holds the dual coefficients of every time side by side,
        shape (n_train, len(cs) * n_outputs).  Returns arrays with a leading
        time axis: means (T, n, k), variances (T, n) or covariances (T, n, n).

        Test points are processed in chunks sized by scikit-learn's
        ``working_memory``; the test × test matrix is only built for
        ``return_cov``.
        """
        n_test, n_train = X.shape[0], self.X_train_.shape[0]
        n_times = len(cs)
        n_outputs = coefs.shape[1] // n_times
        means = np.empty((n_test, n_times * n_outputs))
        if return_cov:
            # The covariance is n_test × n_test anyway: one chunk.
            batches = [slice(0, n_test)]
        else:
            # Per test row: the cross kernels and up to four temporaries of
            # the variance, each n_train long.
            row_floats = n_train * (6 if return_std else 2) + n_times * n_outputs
            chunk = get_chunk_n_rows(row_bytes=8 * row_floats, max_n_rows=n_test)
            batches = gen_batches(n_test, chunk)
        variances = np.empty((n_times, n_test)) if return_std else None
        covariances = None
        need_nngp = (return_std or return_cov) and self._kind == "ntk"
        if need_nngp:
            # In the units of the factorisation (see _spread).
            train_nngp = self._train_nngp(state)
            exponent = state.get("scale_exponent", 0)
            if exponent:
                train_nngp = np.ldexp(train_nngp, -exponent)
            state = dict(state, nngp=train_nngp)
        if need_nngp and n_times > 1 and "eigenvectors" in state:
            # Several times: rotate 𝒦(X, X) into Θ's eigenbasis once (2 N³)
            # to save one (n_test × N × N) product per time.
            V = state["eigenvectors"]
            state["rotated_nngp"] = V.T @ state["nngp"] @ V
        for rows in batches:
            K, nngp = self._cross_kernels(X[rows], want_nngp=need_nngp)
            means[rows] = K @ coefs
            if not (return_std or return_cov):
                continue
            if return_cov:
                prior = self._prior_covariance(X[rows])
            else:
                prior = self._prior_variance(X[rows])
            spread = self._spread(state, K, nngp, cs, return_cov)
            if return_cov:
                covariances = prior[None] + spread
            else:
                variances[:, rows] = prior[None] + spread
        means = means.reshape(n_test, n_times, n_outputs).transpose(1, 0, 2)
        if return_std:
            # Rounding leaves tiny negative variances at training points.
            return means, np.sqrt(np.maximum(variances, 0.0))
        if return_cov:
            covariances = 0.5 * (covariances + np.swapaxes(covariances, 1, 2))
            return means, covariances
        return means, None

    def _spread(self, state, K, nngp, cs, full):
        """Covariance minus prior, per time: diagonals (T, n) or matrices (T, n, n).

        The factorisation is of (K + αI)/2^e (and ``state["nngp"]`` already
        divided by 2^e): with the cross kernels divided by 2^e and time scales
        c·2^e, every term below is 2^-e times its value (A and the filters
        are invariant), so the result is scaled back by 2^e.
        """
        exponent = state.get("scale_exponent", 0)
        if not exponent:
            return self._unscaled_spread(state, K, nngp, cs, full)
        spread = self._unscaled_spread(
            state, np.ldexp(K, -exponent),
            None if nngp is None else np.ldexp(nngp, -exponent),
            [_scaled_time(c, exponent) for c in cs], full,
        )
        return np.ldexp(spread, exponent, out=spread)

    def _unscaled_spread(self, state, K, nngp, cs, full):
        """:meth:`_spread` in the units of the factorisation.

        Readout only (K = 𝒦):  −𝒦(x,X) V diag((1 − e^{−2cλ})/λ) Vᵀ 𝒦(X,x')
        All layers (K = Θ):      A 𝒦(X,X) Aᵀ − A 𝒦(X,x') − 𝒦(x,X) Aᵀ,
                                 A = Θ(x,X) V diag(φ_c(λ)) Vᵀ.
        """
        n = K.shape[0]
        out = np.empty((len(cs), n, n) if full else (len(cs), n))
        if self._kind == "nngp":
            if "cholesky" in state:
                # GP posterior: 𝒦(x,X)(𝒦 + αI)⁻¹𝒦(X,x') = WᵀW with W = U⁻ᵀ𝒦(X,x).
                W = linalg.solve_triangular(
                    state["cholesky"], K.T, trans="T", lower=False, check_finite=False
                )
                out[:] = -(W.T @ W) if full else -np.einsum("ij,ij->j", W, W)
                return out
            B = K @ state["eigenvectors"]
            eigenvalues = state["eigenvalues"]
            if not full:
                # (1 − e^{−2cλ})/λ = φ_{2c}(λ): one matrix product for all times.
                filters = np.stack([_phi(eigenvalues, 2.0 * c) for c in cs], axis=1)
                return -((B * B) @ filters).T
            for i, c in enumerate(cs):
                out[i] = -((B * _phi(eigenvalues, 2.0 * c)) @ B.T)
            return out
        if "rotated_nngp" in state:
            # A_t = P_t Vᵀ with P_t = Θ(x,X) V diag(φ_t); with M = Vᵀ𝒦(X,X)V and
            # G = 𝒦(x,X) V: A𝒦Aᵀ = P M Pᵀ and A𝒦(X,x') = P Gᵀ.
            V, M = state["eigenvectors"], state["rotated_nngp"]
            projected, G = K @ V, nngp @ V
            for i, c in enumerate(cs):
                P = projected * _phi(state["eigenvalues"], c)
                PM = P @ M
                if full:
                    cross = P @ G.T
                    out[i] = PM @ P.T - cross - cross.T
                else:
                    PM -= 2.0 * G
                    out[i] = np.einsum("ij,ij->i", PM, P)
            return out
        train_nngp = state["nngp"]
        if "cholesky" in state:
            # t = inf: A = Θ(x,X)(Θ + αI)⁻¹.
            A = linalg.cho_solve((state["cholesky"], False), K.T, check_finite=False).T
        else:
            # Θ(x,X) V, shared by every time: A_t = (Θ(x,X) V) diag(φ_t) Vᵀ.
            V = state["eigenvectors"]
            projected = K @ V
        for i, c in enumerate(cs):
            if "cholesky" not in state:
                A = (projected * _phi(state["eigenvalues"], c)) @ V.T
            A_nngp = A @ train_nngp
            if full:
                cross = A @ nngp.T
                out[i] = A_nngp @ A.T - cross - cross.T
            else:
                A_nngp -= 2.0 * nngp
                out[i] = np.einsum("ij,ij->i", A_nngp, A)
        return out

    def _shape_prediction(self, mean, std_or_cov, return_std, return_cov):
        """Drop the output axis for one-column targets, as GaussianProcessRegressor."""
        n_outputs = self._Y_train.shape[1]
        if n_outputs == 1:
            mean = mean[..., 0]
        if not (return_std or return_cov):
            return mean
        if n_outputs > 1:
            # Outputs are independent with the same kernel: the same spread
            # for each, in GaussianProcessRegressor's multi-target shapes.
            std_or_cov = np.repeat(std_or_cov[..., None], n_outputs, axis=-1)
        return mean, std_or_cov

    def _predict_times(self, X, times, return_std=False, return_cov=False):
        """Shared body of predict and staged_predict (times: 1-D, validated)."""
        if return_std and return_cov:
            raise RuntimeError(
                "At most one of return_std or return_cov can be requested."
            )
        X = self._validate_test(X)
        cs = [self._time_scale(t) for t in times]
        with self._checked_range("The predictions", X):
            if list(times) == [self._fitted_t]:
                state, coefs = self._state, self._coef
            else:
                needs_eigh = any(np.isfinite(times)) or "cholesky" not in self._state
                state = self._state
                if needs_eigh and "eigenvalues" not in state:
                    state = self._decomposition("eigh")
                if "eigenvalues" in state and "projected_targets" not in state:
                    projected = state["eigenvectors"].T @ self._Y_train
                    state = dict(state, projected_targets=projected)
                coefs = self._dual_coef(state, self._Y_train, cs)
            mean, spread = self._posterior(X, cs, state, coefs, return_std,
                                           return_cov)
        self._check_finite("The predictions", X, coefs, mean, spread)
        return self._shape_prediction(mean, spread, return_std, return_cov)

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


_PARAMETERS_DOC = """
    Parameters
    ----------
    depth : int, default=3
        Number of dense layers L >= 1 (L - 1 hidden activations); depth 1 is
        the linear model.
    activation : str or callable, default="relu"
        "relu", "leaky_relu", "abs", "erf", "identity", "gelu", "sin", "cos",
        "tanh", "sigmoid", "softplus" or a vectorised callable; see
        :class:`~sklearn_ntk.NTK`.
    beta : float, default=0.1
        Standard deviation of the biases (β >= 0).
    weight_std : float, default=1.0
        Standard deviation multiplier of the weights (σ_w > 0).
    t : float, default=np.inf
        Training time of gradient flow. ``np.inf`` is the converged network
        (kernel regression), 0 the untrained network (mean 0, prior
        covariance). A finite t acts as a regulariser: directions of small
        kernel eigenvalue are fitted last (early stopping).
    learning_rate : float, default=1.0
        Learning rate η of gradient flow: only the product η·t matters, the
        time scale being c = η·t / n_samples.
    alpha : float, default=1e-10
        Added to the diagonal of the training kernel, as in
        :class:`~sklearn.gaussian_process.GaussianProcessRegressor`
        (observation noise variance; ensures a positive definite matrix).
    memory : None, str or joblib.Memory, default=None
        Caches the training kernels and their eigendecomposition, keyed on
        the training data and the kernel parameters (not on ``t``,
        ``learning_rate`` or the targets), as ``memory`` of
        :class:`~sklearn.pipeline.Pipeline`: a search over ``t`` then
        computes one kernel and one eigendecomposition per fold. The
        Cholesky factor used at ``t=np.inf`` is recomputed from the cached
        kernel (it costs about as much as reading it back). A string is the
        path of the cache directory.
    n_jobs : int, default=None
        Number of joblib workers (threads) computing kernel tiles.
"""


def _doc(cls):
    """Insert the shared Parameters section into an estimator's docstring."""
    cls.__doc__ = cls.__doc__.replace("    %(parameters)s", _PARAMETERS_DOC.strip("\n"))
    return cls


class _BaseRegressor(RegressorMixin, _BaseGradientFlow):
    """Regression: the mean, std and covariance of the trained ensemble."""

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
        self._validate_params()
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=np.float64,
        )
        self.y_train_ = y
        Y = y.reshape(y.shape[0], -1)
        self._fit_targets(X, Y)
        self.dual_coef_ = self._coef[:, 0] if y.ndim == 1 else self._coef
        return self

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
        y_std : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Only with ``return_std``.
        y_cov : ndarray of shape (n_samples, n_samples) or \
                (n_samples, n_samples, n_targets)
            Only with ``return_cov``.
        """
        check_is_fitted(self)
        result = self._predict_times(X, [self._fitted_t], return_std, return_cov)
        if return_std or return_cov:
            return result[0][0], result[1][0]
        return result[0]

    def staged_predict(self, X, times, return_std=False, return_cov=False):
        """Predictions at every training time in ``times``: the early-stopping path.

        All times share one eigendecomposition of the training kernel and one
        evaluation of the cross kernel, so the whole path costs about one
        prediction.

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
        times = self._check_times(times)
        return self._predict_times(X, times, return_std, return_cov)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


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

    Attributes
    ----------
    X_train_ : ndarray of shape (n_samples, n_features)
        Training inputs (needed for prediction).
    y_train_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Training targets.
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Coefficients of the mean prediction: ``Θ(X, X_train_) @ dual_coef_``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when X has string column names.

    See Also
    --------
    NNGPRegressor : Only the readout layer trained (the NNGP kernel).
    NTKClassifier : Classification through regression on encoded labels.

    Notes
    -----
    With Θ + αI = V diag(λ) Vᵀ and c = η t / N the mean is
    Θ(x, X) V diag((1 − e^{−cλ})/λ) Vᵀ y; the covariance is Lee et al.'s
    (2019) with the NNGP kernel as the prior. At ``t=np.inf`` the mean uses a
    Cholesky factorisation, at finite t one symmetric eigendecomposition.

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

    Attributes
    ----------
    X_train_ : ndarray of shape (n_samples, n_features)
        Training inputs (needed for prediction).
    y_train_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Training targets.
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Coefficients of the mean prediction: ``𝒦(X, X_train_) @ dual_coef_``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when X has string column names.

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


@_doc
class NTKClassifier(ClassifierMixin, _BaseGradientFlow):
    """Classifier: an infinitely wide network regressing encoded labels.

    Each class is one output of an :class:`NTKRegressor` (all layers trained
    for time ``t``) fitted to the labels encoded as in
    :class:`~sklearn.linear_model.RidgeClassifier`: +1 for the sample's class
    and -1 for the others (binary problems: one output, +1 for
    ``classes_[1]``). The predicted class has the largest mean output; at
    ``t=0`` every output is 0 and ``classes_[0]`` is predicted.

    %(parameters)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    X_train_ : ndarray of shape (n_samples, n_features)
        Training inputs.
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_classes)
        Coefficients of :meth:`decision_function`.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when X has string column names.

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
    """

    _kind = "ntk"

    def fit(self, X, y):
        """Fit the network to the encoded class labels.

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
        self._validate_params()
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
        self._fit_targets(X, Y)
        self.dual_coef_ = self._coef[:, 0] if Y.shape[1] == 1 else self._coef
        return self

    def decision_function(self, X):
        """Mean network output for each class (binary: for ``classes_[1]``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._predict_times(X, [self._fitted_t])[0]

    def staged_decision_function(self, X, times):
        """:meth:`decision_function` at every training time in ``times``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        times : array-like of shape (n_times,)
            Training times t >= 0 (``np.inf`` allowed).

        Returns
        -------
        scores : ndarray of shape (n_times, n_samples) or \
                (n_times, n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._predict_times(X, self._check_times(times))

    def predict(self, X):
        """Class with the largest mean network output.

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
