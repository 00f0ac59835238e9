"""Kernel gradient flow: the factorisations of the training kernel and what they answer.

A network in the infinite-width limit trained by gradient flow on the squared
loss C(f) = 1/(2N) Σᵢ ‖f(xᵢ) − yᵢ‖² follows kernel gradient descent with a
constant kernel K: the NTK Θ when every layer is trained, the NNGP kernel 𝒦
when only the readout is.  Averaged over random initialisations its output at
time t is Gaussian (Lee et al. 2019).  With K + αI = V diag(λ) Vᵀ, the time
scale c = η t / N and

    φ_c(λ) = (1 − e^{−cλ}) / λ          (= c at λ = 0, 1/λ at c = ∞)

the mean on a point x is K(x, X) a_c with dual coefficients a_c = V diag(φ_c) Vᵀ y,
and the covariance is (with the readout's kernel 𝒦 as the prior)

    readout only (K = 𝒦):  𝒦(x, x') − 𝒦(x, X) V diag(φ_{2c}) Vᵀ 𝒦(X, x')
    all layers (K = Θ):     𝒦(x, x') + A 𝒦(X, X) Aᵀ − A 𝒦(X, x') − 𝒦(x, X) Aᵀ,
                            A = Θ(x, X) V diag(φ_c) Vᵀ.

Each factorisation of K + αI is a type that answers these three questions —
dual coefficients, readout-only spread and all-layers spread — for a list of
time scales: :class:`CholeskyFactorization` for c = ∞ (a solve, N³/3 flops) and
:class:`EigenFactorization` for any c (N³·(4/3 + more), one symmetric
eigendecomposition shared by every output and time).  The estimators in
:mod:`sklearn_ntk._estimators` hold one and never look inside it.
"""

import math
import warnings

import numpy as np
from scipy import linalg

from ._range import power_of_two_exponent

#: LAPACK driver of the symmetric eigendecomposition: divide and conquer is
#: as fast as any driver and keeps the eigenvectors orthogonal to 5e-15,
#: where MRRR ("evr") gives only 1e-10
#: (``benchmarks/bench_estimators.py --only drivers``).
EIGH_DRIVER = "evd"

#: The linear algebra runs on (K + αI) / 2^e, with 2^e ~ the largest diagonal
#: entry of the training kernel, when that is outside 2^±128: the
#: factorisation, its products with the cross kernels and the covariances
#: then stay far from overflow and underflow at any kernel scale.  The
#: rescaling is exact (α and the time scale c = ηt/N absorb it: α/2^e,
#: c·2^e), so means are invariant and covariances scale back by 2^e.
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


def phi(eigenvalues, time_scale):
    """φ_c(λ) = (1 − e^{−cλ})/λ, with its limits c at λ = 0 and 1/λ at c = ∞.

    ``-expm1(-cλ)`` keeps full relative accuracy when cλ is tiny, where
    ``1 - exp(-cλ)`` would cancel.  At c = ∞ eigenvalues at or below the
    pseudo-inverse cutoff (as :func:`scipy.linalg.pinvh`) are dropped: the
    flow never reaches them.
    """
    if np.isinf(time_scale):
        largest = eigenvalues[-1] if eigenvalues.size else 0.0
        cutoff = largest * eigenvalues.size * np.finfo(float).eps
        values = np.zeros_like(eigenvalues)
        keep = eigenvalues > cutoff
        values[keep] = 1.0 / eigenvalues[keep]
        return values
    values = np.full_like(eigenvalues, time_scale)
    positive = eigenvalues > 0
    lam = eigenvalues[positive]
    values[positive] = -np.expm1(-time_scale * lam) / lam
    return values


def _with_ridge(K, alpha):
    """K + alpha*I as a Fortran-ordered view of K's own memory (K is overwritten).

    K is symmetric, so its transpose is the same matrix in Fortran order:
    LAPACK then works in place instead of on a copy.
    """
    A = K.T
    A.flat[:: A.shape[0] + 1] += alpha
    return A


class Factorization:
    """A factorisation of (K + αI) / 2^e answering the gradient-flow posterior.

    Every public method takes a list of time scales c = η t / N and returns
    one result per time scale, stacked along the first axis.  The power of
    two 2^e (``scale_exponent``, see UNSCALED_KERNEL_EXPONENTS) is handled
    here; subclasses implement the underscored methods in the units of the
    factorisation, where a time scale c is c·2^e and a kernel K is K/2^e.
    """

    scale_exponent = 0

    def supports(self, time_scales):
        """Whether every time scale in ``time_scales`` can be answered."""
        raise NotImplementedError

    def _in_units(self, *kernels):
        return [np.ldexp(kernel, -self.scale_exponent) for kernel in kernels]

    def _times_in_units(self, time_scales):
        # Beyond float64, c·2^e is infinite: e^{-cλ} is 0 for every λ > 0 anyway.
        times = []
        for c in time_scales:
            try:
                times.append(math.ldexp(c, self.scale_exponent))
            except OverflowError:
                times.append(math.inf)
        return times

    def coefficients(self, Y, time_scales):
        """Dual coefficients a_c with mean = K(x, X) a_c, shape (T, N, k)."""
        coef = self._coefficients(Y, self._times_in_units(time_scales))
        return np.ldexp(coef, -self.scale_exponent)

    def readout_spread(self, cross_nngp, time_scales, full):
        """Posterior minus prior covariance when only the readout trains (K = 𝒦).

        ``cross_nngp`` is 𝒦(x, X) of shape (m, N).  Returns the diagonals
        (T, m), or with ``full`` the matrices (T, m, m).
        """
        if not self.scale_exponent:
            return self._readout_spread(cross_nngp, time_scales, full)
        (cross_nngp,) = self._in_units(cross_nngp)
        spread = self._readout_spread(cross_nngp, self._times_in_units(time_scales),
                                      full)
        return np.ldexp(spread, self.scale_exponent)

    def prepare_all_layers(self, train_nngp, n_times):
        """What :meth:`all_layers_spread` needs of 𝒦(X, X), once per prediction.

        ``train_nngp`` is 𝒦(X, X) without α; test points come in chunks, and
        whatever costs O(N³) is done here rather than once per chunk.
        """
        if self.scale_exponent:
            (train_nngp,) = self._in_units(train_nngp)
        return self._prepare_all_layers(train_nngp, n_times)

    def all_layers_spread(self, cross_ntk, cross_nngp, prepared, time_scales, full):
        """Posterior minus prior covariance when every layer trains (K = Θ).

        A 𝒦(X, X) Aᵀ − A 𝒦(X, x') − 𝒦(x, X) Aᵀ with A = Θ(x, X) V diag(φ_c) Vᵀ;
        ``prepared`` comes from :meth:`prepare_all_layers`.  Shapes as
        :meth:`readout_spread`.
        """
        if not self.scale_exponent:
            return self._all_layers_spread(cross_ntk, cross_nngp, prepared,
                                           time_scales, full)
        cross_ntk, cross_nngp = self._in_units(cross_ntk, cross_nngp)
        spread = self._all_layers_spread(cross_ntk, cross_nngp, prepared,
                                         self._times_in_units(time_scales), full)
        return np.ldexp(spread, self.scale_exponent)

    def _prepare_all_layers(self, train_nngp, n_times):
        return train_nngp


def _spread_terms(A, A_nngp, cross_nngp, full):
    """A𝒦Aᵀ − A𝒦(X, x') − 𝒦(x, X)Aᵀ given ``A_nngp`` = A𝒦 (overwritten).

    Only the diagonal unless ``full``: the m × m matrix is never formed then.
    """
    if full:
        cross = A @ cross_nngp.T
        return A_nngp @ A.T - cross - cross.T
    A_nngp -= 2.0 * cross_nngp
    return np.einsum("ij,ij->i", A_nngp, A)


class CholeskyFactorization(Factorization):
    """K + αI = UᵀU for the converged network (c = ∞): kernel ridge regression.

    Parameters
    ----------
    upper : ndarray of shape (N, N)
        U in the upper triangle (the lower one holds leftovers of K).
    """

    def __init__(self, upper):
        self.upper = upper

    @classmethod
    def of(cls, K, alpha):
        """Factorise K + alpha*I, overwriting K; raise LinAlgError if singular."""
        factor, _ = linalg.cho_factor(
            _with_ridge(K, alpha), lower=False, overwrite_a=True, check_finite=False
        )
        return cls(factor)

    def supports(self, time_scales):
        return all(np.isinf(c) for c in time_scales)

    def _solve(self, B):
        return linalg.cho_solve((self.upper, False), B, check_finite=False)

    def _coefficients(self, Y, time_scales):
        coef = self._solve(Y)
        return np.broadcast_to(coef, (len(time_scales),) + coef.shape)

    def _readout_spread(self, cross_nngp, time_scales, full):
        # 𝒦(x,X)(𝒦 + αI)⁻¹𝒦(X,x') = WᵀW with W = U⁻ᵀ𝒦(X,x).
        W = linalg.solve_triangular(
            self.upper, cross_nngp.T, trans="T", lower=False, check_finite=False
        )
        spread = -(W.T @ W) if full else -np.einsum("ij,ij->j", W, W)
        return np.broadcast_to(spread, (len(time_scales),) + spread.shape)

    def _all_layers_spread(self, cross_ntk, cross_nngp, prepared, time_scales, full):
        A = self._solve(cross_ntk.T).T  # Θ(x,X)(Θ + αI)⁻¹
        spread = _spread_terms(A, A @ prepared, cross_nngp, full)
        return np.broadcast_to(spread, (len(time_scales),) + spread.shape)


class EigenFactorization(Factorization):
    """K + αI = V diag(λ) Vᵀ, for every time scale at once.

    Eigenvalues that rounding pushed below 0 are clipped to 0: the flow does
    not move along those directions.

    Parameters
    ----------
    eigenvalues : ndarray of shape (N,)
    eigenvectors : ndarray of shape (N, N)
    """

    def __init__(self, eigenvalues, eigenvectors):
        self.eigenvalues = eigenvalues
        self.eigenvectors = eigenvectors

    @classmethod
    def of(cls, K, alpha):
        """Eigendecompose K + alpha*I, overwriting K."""
        eigenvalues, eigenvectors = linalg.eigh(
            _with_ridge(K, alpha), lower=True, driver=EIGH_DRIVER, overwrite_a=True,
            check_finite=False,
        )
        np.maximum(eigenvalues, 0.0, out=eigenvalues)
        return cls(eigenvalues, eigenvectors)

    def supports(self, time_scales):
        return True

    def _filters(self, time_scales, factor=1.0):
        """φ_{factor·c}(λ) for every c, shape (N, T)."""
        return np.stack([phi(self.eigenvalues, factor * c) for c in time_scales], axis=1)

    def _coefficients(self, Y, time_scales):
        V = self.eigenvectors
        projected_targets = V.T @ Y
        filtered = self._filters(time_scales).T[:, :, None] * projected_targets[None]
        n_times, n_train, n_outputs = filtered.shape
        # One product with V for every time: V is read from memory once.
        coef = V @ filtered.transpose(1, 0, 2).reshape(n_train, n_times * n_outputs)
        return coef.reshape(n_train, n_times, n_outputs).transpose(1, 0, 2)

    def _readout_spread(self, cross_nngp, time_scales, full):
        B = cross_nngp @ self.eigenvectors
        # (1 − e^{−2cλ})/λ = φ_{2c}(λ).
        filters = self._filters(time_scales, factor=2.0)
        if not full:
            return -((B * B) @ filters).T
        return np.stack([-((B * filters[:, i]) @ B.T) for i in range(len(time_scales))])

    def _prepare_all_layers(self, train_nngp, n_times):
        if n_times == 1:
            return train_nngp, None
        # Several times: rotate 𝒦(X, X) into the eigenbasis once (2 N³),
        # M = Vᵀ𝒦(X,X)V, to save an (m × N × N) product per time and chunk.
        V = self.eigenvectors
        return train_nngp, V.T @ train_nngp @ V

    def _all_layers_spread(self, cross_ntk, cross_nngp, prepared, time_scales, full):
        train_nngp, rotated_nngp = prepared
        V = self.eigenvectors
        projected = cross_ntk @ V  # Θ(x,X) V, shared by every time
        if rotated_nngp is not None:
            G = cross_nngp @ V
        spreads = []
        for c in time_scales:
            P = projected * phi(self.eigenvalues, c)  # A_c = P Vᵀ
            if rotated_nngp is None:
                A = P @ V.T
                spreads.append(_spread_terms(A, A @ train_nngp, cross_nngp, full))
            else:
                # A𝒦Aᵀ = P M Pᵀ and A𝒦(X, x') = P Gᵀ with G = 𝒦(x, X) V.
                spreads.append(_spread_terms(P, P @ rotated_nngp, G, full))
        return np.stack(spreads)


def factorize(K, alpha, finite_time):
    """The factorisation of K + alpha*I that the time scales need (K is overwritten).

    ``finite_time`` asks for the eigendecomposition; otherwise a Cholesky
    factorisation, which falls back to the eigendecomposition (the
    pseudo-inverse) with a :class:`SingularKernelWarning` when K + alpha*I is
    not positive definite to working precision.  Far from unit scale, the
    matrix factorised is (K + alpha*I) / 2^e (see UNSCALED_KERNEL_EXPONENTS).
    """
    exponent = power_of_two_exponent(np.max(K.diagonal(), initial=0.0))
    if abs(exponent) <= UNSCALED_KERNEL_EXPONENTS:
        exponent = 0
    ridge = alpha
    if exponent:
        np.ldexp(K, -exponent, out=K)
        ridge = np.ldexp(alpha, -exponent)
    factorization = None
    if not finite_time:
        # The Cholesky factor fills one triangle of K's memory and leaves the
        # other intact, which is all the eigendecomposition fallback reads.
        diagonal = K.diagonal().copy()
        try:
            factorization = CholeskyFactorization.of(K, ridge)
        except linalg.LinAlgError:
            warnings.warn(
                "The training kernel K + alpha*I is not positive definite to "
                f"working precision (alpha={alpha!r}; duplicated "
                "training points?). Using its pseudo-inverse, the minimum-norm "
                "solution, instead of a Cholesky solve; increase alpha to "
                "regularise.",
                SingularKernelWarning,
                stacklevel=6,  # the user's call of fit
            )
            np.fill_diagonal(K.T, diagonal)
    if factorization is None:
        factorization = EigenFactorization.of(K, ridge)
    factorization.scale_exponent = exponent
    return factorization
