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
time scales: :class:`CholeskyFactorization` for c = ∞ (a solve, N³/3 flops),
:class:`EigenFactorization` for any c (N³·(4/3 + more), one symmetric
eigendecomposition shared by every output and time) and
:class:`KrylovFactorization` for the dual coefficients of given targets at
every finite c up to a ceiling (one Cholesky factorisation, N³/3 flops, and
O(k N²) work per iteration of a shift-and-invert Lanczos process).  The
estimators in :mod:`sklearn_ntk._estimators` hold one and never look inside
it.
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

    #: Whether :meth:`readout_spread` and :meth:`all_layers_spread` are
    #: answered (a type that does not answer them does not define their
    #: underscored implementations).
    answers_spread = True

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

    def extended(self, max_time_scale, max_steps=None):
        """A factorisation also serving finite c up to ``max_time_scale``, or None.

        None when this type cannot grow (or not within ``max_steps``).
        """
        return None


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


#: The Krylov iteration stops when, for every time scale of its range, the
#: dual coefficients moved by less than this, relative, in the kernel's norm
#: (see :class:`KrylovFactorization`), at two checks in a row.  A prediction
#: on any point x then moves by at most this times √k(x, x) ‖a‖_K.  Rounding
#: makes successive iterates differ by 1e-13 relative on well-conditioned
#: kernels but by 5e-11 on a singular one (α = 0, duplicated points) at
#: c·s ~ 1e5; a process that cannot settle runs on until its space is
#: invariant (exact) or its step budget is spent.
KRYLOV_TOLERANCE = 1e-10

#: Iterations between two convergence checks, and the distance between the
#: two iterates each check compares.
KRYLOV_CHECK_EVERY = 5

#: Ranges of time scales reach down to this value of c·λ_max: below it
#: φ_c(λ) = c (1 − cλ/2 + …) is a constant to 1e-6 and the first iterate is
#: already that accurate.
KRYLOV_SMALLEST_DECADE = 1e-6


def _ritz(diagonal, off_diagonal, shift, n_train):
    """Ritz values θ of K + αI and eigenvectors W of the Lanczos matrix T.

    T = W diag(μ) Wᵀ approximates (K + αI + sI)⁻¹ on the basis, so
    θ = 1/μ − s.  The triangular solves see B with a backward error of
    N·eps·‖B‖, so θ <= N·eps·(θ_max + s) is rounding: it is set to 0, the
    eigenvalue of a singular K + αI (as the pseudo-inverse's cutoff does).
    T is positive definite; a rounding-level μ <= 0 stands for an eigenvalue
    beyond any scale (φ_c of it is 0).
    """
    if len(diagonal) == 1:
        inverse_values, vectors = np.array(diagonal, dtype=float), np.ones((1, 1))
    else:
        inverse_values, vectors = linalg.eigh_tridiagonal(
            diagonal, off_diagonal[: len(diagonal) - 1], check_finite=False
        )
    inverse_values = np.maximum(inverse_values, np.finfo(float).tiny)
    ritz = 1.0 / inverse_values - shift
    ritz[ritz <= n_train * np.finfo(float).eps * (ritz.max() + shift)] = 0.0
    return ritz, vectors


def _ritz_filters(ritz, vectors, time_scales):
    """φ_c(θ) ∘ W[0] for every c, shape (m, T).

    The coordinates, in the eigenvectors of T, of the approximation
    Q W diag(φ_c(θ)) Wᵀ e₁ of φ_c(K + αI) q₁.
    """
    return np.stack([phi(ritz, c) for c in time_scales], axis=1) * vectors[0][:, None]


class _LanczosColumn:
    """The shift-and-invert Lanczos process started from one target column.

    ``basis`` holds the orthonormal vectors q₁, …, q_{m+1} as rows, with
    (K + αI + sI)⁻¹ Q_m = Q_m T_m + β_{m+1} q_{m+1} e_mᵀ; ``diagonal`` and
    ``off_diagonal`` hold T_m.  ``exact`` is set when the Krylov space became
    invariant (β_{m+1} is rounding): the approximation is then exact.
    """

    def __init__(self, target):
        self.norm = float(np.linalg.norm(target))
        self.basis = np.empty((8, target.shape[0]))
        self.steps = 0
        self.diagonal, self.off_diagonal = [], []
        self.exact = self.norm == 0.0
        self.converged_up_to = 0.0
        self.settled_checks = 0
        if self.norm:
            self.basis[0] = target / self.norm

    def copy(self):
        clone = object.__new__(_LanczosColumn)
        clone.__dict__.update(self.__dict__)
        clone.basis = self.basis.copy()
        clone.diagonal = list(self.diagonal)
        clone.off_diagonal = list(self.off_diagonal)
        return clone

    def advance(self, solved):
        """One step, given ``solved`` = (K + αI + sI)⁻¹ q_m (overwritten)."""
        m = self.steps
        current = self.basis[: m + 1]
        self.diagonal.append(float(self.basis[m] @ solved))
        size = np.linalg.norm(solved)
        # Full reorthogonalisation, twice ("twice is enough", Parlett): the
        # basis stays orthonormal to rounding, so no spurious Ritz values.
        for _ in range(2):
            solved -= current.T @ (current @ solved)
        beta = float(np.linalg.norm(solved))
        self.steps = m + 1
        n = solved.shape[0]
        if beta <= n * np.finfo(float).eps * size or self.steps == n:
            self.exact = True
            return
        if self.basis.shape[0] == m + 1:
            grown = np.empty((2 * self.basis.shape[0], n))
            grown[: m + 1] = current
            self.basis = grown
        self.basis[m + 1] = solved / beta
        self.off_diagonal.append(beta)

    def check(self, shift, max_time_scale):
        """Whether the last KRYLOV_CHECK_EVERY steps moved no coefficient.

        The estimate compares a_m(c) and a_{m−d}(c) (d = KRYLOV_CHECK_EVERY)
        in the norm ‖a‖_K = √(aᵀ(K + αI)a), evaluated with the current Ritz
        values: by Cauchy–Schwarz in the kernel's Hilbert space a change δa
        of the coefficients moves the prediction at x by at most
        √k(x, x) ‖δa‖_K.  Time scales: decades from ``max_time_scale`` down
        to KRYLOV_SMALLEST_DECADE / θ_max.
        """
        ritz, vectors = _ritz(self.diagonal, self.off_diagonal, shift,
                              self.basis.shape[1])
        n_decades = 1
        if ritz.max() > 0:
            n_decades += max(0, math.ceil(math.log10(
                max_time_scale * ritz.max() / KRYLOV_SMALLEST_DECADE)))
        time_scales = max_time_scale * 10.0 ** -np.arange(min(n_decades, 40))
        current = _ritz_filters(ritz, vectors, time_scales)
        previous_m = self.steps - KRYLOV_CHECK_EVERY
        previous_ritz, previous_vectors = _ritz(
            self.diagonal[:previous_m], self.off_diagonal, shift, self.basis.shape[1])
        previous = _ritz_filters(previous_ritz, previous_vectors, time_scales)
        # Both iterates in the coordinates of T_m's eigenvectors.
        moved = current - vectors[:previous_m].T @ (previous_vectors @ previous)
        weights = np.sqrt(ritz)[:, None]
        change = np.linalg.norm(weights * moved, axis=0)
        size = np.linalg.norm(weights * current, axis=0)
        settled = np.all(change <= KRYLOV_TOLERANCE * size)
        self.settled_checks = self.settled_checks + 1 if settled else 0
        if self.settled_checks >= 2:
            self.converged_up_to = max_time_scale
        return self.converged_up_to >= max_time_scale

    def coefficients(self, shift, time_scales):
        """a_c ≈ φ_c(K + αI) y for every c, shape (N, T).

        No step yet (a basis for c = 0 only, or y = 0): φ_0 = 0, a = 0.
        """
        if not self.norm or not self.steps:
            return np.zeros((self.basis.shape[1], len(time_scales)))
        ritz, vectors = _ritz(self.diagonal, self.off_diagonal, shift,
                              self.basis.shape[1])
        filters = _ritz_filters(ritz, vectors, time_scales)
        return self.basis[: self.steps].T @ (vectors @ filters) * self.norm


class KrylovFactorization(Factorization):
    """Shift-and-invert Lanczos for the dual coefficients at finite times.

    With B = K + αI + sI = UᵀU (one Cholesky factorisation, s > 0 a shift)
    the Lanczos process on B⁻¹ started from a target column y builds an
    orthonormal basis Q_m of the rational Krylov space span{y, B⁻¹y, …} and
    T_m = Q_mᵀB⁻¹Q_m; then φ_c(K + αI) y ≈ ‖y‖ Q_m φ_c(T_m⁻¹ − sI) e₁ for
    every c at once (van den Eshof & Hochbruck 2006: for the exponential the
    rational approximation converges at a rate bounded independently of the
    time; measured here, c → ∞ takes about twice the steps of c·s ~ 1).  Each
    iteration costs two triangular solves with U (2 N² flops, for every
    column at once) and the reorthogonalisation (4 N m).  B is positive
    definite even when K + αI is singular (α = 0 and duplicated points), and
    φ_c is finite there.

    One basis per target column; it answers every finite time scale up to
    ``max_time_scale`` (in the units of the factorisation) to
    KRYLOV_TOLERANCE, and is extended on request while the factor is kept.
    It answers no spread: the covariance needs the eigendecomposition.

    Parameters
    ----------
    upper : ndarray of shape (N, N)
        U in the upper triangle of B's memory.
    shift : float
        s, in the units of the factorisation.
    targets : ndarray of shape (N, k)
        The target columns the bases start from.
    """

    answers_spread = False

    def __init__(self, upper, shift, targets):
        self.upper = upper
        self.shift = shift
        self.targets = targets
        self.columns = [_LanczosColumn(column) for column in targets.T]
        self.max_time_scale = 0.0

    @classmethod
    def of(cls, K, alpha, targets, max_time_scale, scale_exponent=0, max_steps=None):
        """Factorise K + alpha*I + sI, overwriting K, and run the Lanczos processes.

        ``max_time_scale`` is in user units, K and alpha in the units of
        2^scale_exponent.  Returns None when the bases would need more than
        ``max_steps`` steps (K's other triangle and diagonal are intact then).
        """
        factorization = object.__new__(cls)
        factorization.scale_exponent = scale_exponent
        (time_scale,) = factorization._times_in_units([max_time_scale])
        typical = cls.typical_eigenvalue(K)
        shift = cls.shift_for(typical, time_scale)
        upper, _ = linalg.cho_factor(
            _with_ridge(K, alpha + shift), lower=False, overwrite_a=True,
            check_finite=False,
        )
        factorization.__init__(upper, shift, targets)
        factorization.typical = typical
        if not factorization._iterate(time_scale, max_steps):
            return None
        return factorization

    @staticmethod
    def typical_eigenvalue(K):
        """The median diagonal entry of K: a value inside its spectrum."""
        typical = float(np.median(K.diagonal()))
        if typical <= 0.0:
            typical = float(np.max(K.diagonal(), initial=0.0)) or 1.0
        return typical

    @staticmethod
    def shift_for(typical, max_time_scale):
        """s = the typical eigenvalue, raised towards 10/c_max (both in units).

        The median diagonal entry sits inside the spectrum and converges at
        any c; when every c is small, φ_c varies only across the largest
        eigenvalues, which a shift near 1/c resolves in fewer steps (on
        make_friedman1 with N = 2000: 45–50 steps with the median for
        c·s <= 0.1, 10–15 with a shift 100 times larger; the user guide's
        "Finite t without an eigendecomposition").  At most 1000 times the
        median: the Ritz values θ = 1/μ − s carry an absolute rounding error
        of about eps·s, which must stay small against the eigenvalues.
        """
        if max_time_scale <= 0.0:
            return typical
        return max(typical, min(1000.0 * typical, 10.0 / max_time_scale))

    def supports(self, time_scales):
        return all(np.isfinite(c) and c <= self.max_time_scale_in_user_units()
                   for c in time_scales)

    def max_time_scale_in_user_units(self):
        return math.ldexp(self.max_time_scale, -self.scale_exponent)

    def extended(self, max_time_scale, max_steps=None):
        """A copy serving every c up to ``max_time_scale`` (user units).

        Returns None if it would take more than ``max_steps`` steps, or if the
        larger c asks for a smaller shift than this basis's: a shift tuned
        to small c converges slowly at large c, where successive iterates
        differ by less than their error (the caller factorises again).
        """
        (time_scale,) = self._times_in_units([max_time_scale])
        if self.shift_for(self.typical, time_scale) != self.shift:
            return None
        extended = object.__new__(KrylovFactorization)
        extended.__dict__.update(self.__dict__)
        extended.columns = [column.copy() for column in self.columns]
        if not extended._iterate(time_scale, max_steps):
            return None
        return extended

    def _iterate(self, max_time_scale, max_steps):
        """Advance every column until it serves c <= max_time_scale.

        All columns advance together, so that one pass over U (a triangular
        solve with several right-hand sides) serves them all.  Returns False
        when ``max_steps`` (None: no limit) would be exceeded.
        """
        if not np.isfinite(max_time_scale):
            raise ValueError("a Krylov basis serves finite time scales only")
        if max_time_scale <= 0.0:  # φ_0 = 0: the coefficients are 0 on any basis
            self.max_time_scale = max(self.max_time_scale, 0.0)
            return True
        pending = [column for column in self.columns
                   if not column.exact and column.converged_up_to < max_time_scale]
        for column in pending:
            column.settled_checks = 0
        while pending:
            steps = max(column.steps for column in pending)
            if max_steps is not None and steps >= max_steps:
                return False
            current = np.stack([column.basis[column.steps] for column in pending],
                               axis=1)
            solved = linalg.cho_solve((self.upper, False), current, overwrite_b=True,
                                      check_finite=False)
            still = []
            for index, column in enumerate(pending):
                column.advance(np.ascontiguousarray(solved[:, index]))
                if column.exact:
                    continue
                if (column.steps <= KRYLOV_CHECK_EVERY
                        or column.steps % KRYLOV_CHECK_EVERY):
                    still.append(column)
                elif not column.check(self.shift, max_time_scale):
                    still.append(column)
            pending = still
        self.max_time_scale = max(self.max_time_scale, max_time_scale)
        return True

    def _coefficients(self, Y, time_scales):
        if Y is not self.targets and not np.array_equal(Y, self.targets):
            raise ValueError("a Krylov basis answers for the targets it was built from")
        columns = [column.coefficients(self.shift, time_scales)
                   for column in self.columns]
        return np.stack(columns, axis=2).transpose(1, 0, 2)


def kernel_scale_exponent(K):
    """e such that the linear algebra runs on K / 2^e: 0 unless K's largest
    diagonal entry is outside 2^±UNSCALED_KERNEL_EXPONENTS."""
    exponent = power_of_two_exponent(np.max(K.diagonal(), initial=0.0))
    return 0 if abs(exponent) <= UNSCALED_KERNEL_EXPONENTS else exponent


def factorize(K, alpha, finite_time, targets=None, max_time_scale=None,
              max_steps=None):
    """The factorisation of K + alpha*I that the time scales need (K is overwritten).

    ``finite_time`` asks for the eigendecomposition, or with ``targets`` (N, k)
    for the :class:`KrylovFactorization` of those targets serving every
    finite time scale up to ``max_time_scale``; when that takes more than
    ``max_steps`` Lanczos steps (None: no limit), the eigendecomposition
    instead.  Otherwise a Cholesky factorisation, which falls back to the
    eigendecomposition (the pseudo-inverse) with a
    :class:`SingularKernelWarning` when K + alpha*I is not positive definite
    to working precision.  Far from unit scale, the matrix factorised is
    (K + alpha*I) / 2^e (see UNSCALED_KERNEL_EXPONENTS).
    """
    exponent = kernel_scale_exponent(K)
    ridge = alpha
    if exponent:
        np.ldexp(K, -exponent, out=K)
        ridge = np.ldexp(alpha, -exponent)
    factorization = None
    # The Cholesky factor fills one triangle of K's memory and leaves the
    # other intact, which is all the eigendecomposition fallback reads.
    diagonal = K.diagonal().copy()
    if finite_time and targets is not None:
        factorization = KrylovFactorization.of(K, ridge, targets, max_time_scale,
                                               exponent, max_steps)
        if factorization is None:
            np.fill_diagonal(K.T, diagonal)
    elif not finite_time:
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
