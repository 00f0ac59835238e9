"""The numerical path: activations without a closed form.

This module owns :class:`QuadratureActivation`, which computes the duals of
any activation σ (tanh, sigmoid, softplus and user callables) from σ and
its derivatives alone: a Hermite (Mehler) series with an exact bound on its
truncation error, and pair-by-pair nested quadrature where the series would
need too many terms.  The quadrature rules and series live in
:mod:`sklearn_ntk._gaussian_expectations`; the contract with the recursion in
:mod:`sklearn_ntk._activation_interface`.  Also here: the derivative families
of the named numerical activations, and finite differences for callables.
"""

import math
import threading
from typing import NamedTuple

import numpy as np
from scipy.special import expit

from ._activation_interface import Activation, correlation, snapped_inverse_sqrt
from ._gaussian_expectations import (
    CACHED_TERMS,
    NotConvergedError,
    argument_times,
    bivariate_expectations,
    derivative_coefficients,
    feature_levels,
    hermite_at_zero,
    hermite_coefficients,
    mehler,
    normal_expectations,
    series_plan,
    support,
)

#: Bound on the truncation error of the Hermite series, per layer, relative
#: to sqrt(E[σ(u)²] E[σ(v)²]) for k (and to sqrt(E[σ'(u)²] E[σ'(v)²]) for
#: kdot).  The quadrature rules themselves are accurate to ~1e-14.
QUADRATURE_TOLERANCE = 1e-10
#: Most terms a layer's series gets.  Where the bound needs more (saturating
#: σ at large variance: tanh needs ~70 q terms; kinked σ), pairs whose
#: correlation is too close to ±1 for it are computed apart.
_MAX_TERMS = 1024
#: A tile with at least this many such pairs may be summed again with a
#: longer series, of up to _LONGEST terms and _MEMORY_TERMS coefficients
#: (32 MB) in all, where that is cheaper than the pairs' nested rules.  The
#: cost model: _PAIR_SECONDS per pair and _TERM_SECONDS per multiply-add,
#: only their ratio matters (a pair costs as much as ~1e6 multiply-adds).
_LONGER_SERIES = 64
_LONGEST = 8192
_MEMORY_TERMS = 1 << 22
_PAIR_SECONDS = 1e-3
_TERM_SECONDS = 1.2e-9

# The functions whose Gaussian expectations the numerical path takes: σ, σ',
# σ'', σ''', u σ'(u), u σ''(u), and the Dirac mass δ(u) at a kink of σ'
# (only as Hermite coefficients and in closed form).
_VALUE, _SLOPE, _CURVATURE, _THIRD, _U_SLOPE, _U_CURVATURE, _DELTA = range(7)
# Tangents: Price's theorem gives ∂k/∂q11 = E[σ''(u)σ(v)]/2, ∂k/∂q12 =
# E[σ'σ'], ∂kdot/∂q11 = E[σ'''(u)σ'(v)]/2, ∂kdot/∂q12 = E[σ''σ''], and
# Stein's lemma E[u F] = q11 E[∂_u F] + q12 E[∂_v F] turns E[σ''(u)σ(v)] into
# (E[uσ'(u)σ(v)] − q12 E[σ'σ'])/q11, and E[σ'''(u)σ'(v)] into
# (E[uσ''(u)σ'(v)] − q12 E[σ''σ''])/q11.  No σ''' is needed (σ may have a
# kink at 0, and a callable's σ''' by finite differences would be noisy),
# and the tangent splits into terms that vary the variances at a fixed
# correlation and one along dρ.  Price's form instead cancels terms of size
# 1/sqrt(1 − ρ²) when ρ barely moves (1e-9 absolute error at q = 1e5,
# ρ = 0.99995).
_STEIN = ((_U_SLOPE, _VALUE), (_VALUE, _U_SLOPE), (_SLOPE, _SLOPE),
          (_U_CURVATURE, _SLOPE), (_SLOPE, _U_CURVATURE), (_CURVATURE, _CURVATURE))
_STEIN_DELTA = ((_DELTA, _CURVATURE), (_CURVATURE, _DELTA))
_VALUE_PAIRS = ((_VALUE, _VALUE), (_SLOPE, _SLOPE))


def _by_degree(coefficients):
    """(n, families, K) per-point coefficients as (families, K, n), contiguous."""
    return np.ascontiguousarray(np.moveaxis(coefficients, 0, -1))


class _Layer:
    """One layer's series, shared by all its points (and tiles).

    ``plans`` maps each pair of families to how its series is summed (see
    :func:`~sklearn_ntk._gaussian_expectations.series_plan`); ``families``
    lists the families of the coefficient arrays in order.  :meth:`longer`
    computes, once, a longer series for every point of the layer, for tiles
    where many pairs are beyond the prepared one's reach.
    """

    def __init__(self, activation, scales, families, plans, n_terms, n_levels):
        self.activation = activation
        self.scales = scales
        self.families = families
        self.plans = plans
        self.n_terms = n_terms
        self.n_levels = n_levels
        self._longer = {}
        self._lock = threading.Lock()

    def index(self, family):
        return self.families.index(family)

    def longer(self, n_terms):
        """(coefficients by degree (F, K, n), thresholds (n,), plans), cached."""
        with self._lock:
            if n_terms not in self._longer:
                coefficients, thresholds, plans = self.activation._series(
                    self.scales, self.families, tuple(self.plans), self.n_levels,
                    n_terms)
                self._longer[n_terms] = (_by_degree(coefficients), thresholds, plans)
            return self._longer[n_terms]

    def __getstate__(self):
        # Process backends get a copy without the cache and the lock.
        state = dict(self.__dict__, _longer={})
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())


class NumericalFeatures(NamedTuple):
    """Per-point features of :class:`QuadratureActivation` for one layer.

    The series fields index the layer's points (``index`` is the point's
    position among them, for a longer series computed later); the gradient
    fields are None without eval_gradient.
    """

    variance: np.ndarray
    coefficients: np.ndarray  # (n, 2, K): σ and σ' at sqrt(q)
    inverse_root: np.ndarray  # snapped 1/sqrt(q)
    threshold: np.ndarray  # |ρ| beyond which the series is not accurate enough
    layer: np.ndarray  # the _Layer shared by all points (an object array)
    index: np.ndarray
    gradient_coefficients: np.ndarray = None  # (n, F, K): the families of _STEIN
    gradient_threshold: np.ndarray = None
    gradient_layer: np.ndarray = None


class QuadratureActivation(Activation):
    """Any activation without a closed form, smooth or with kinks at 0.

    **Hermite series.**  For u = sqrt(q11) z1 and v = sqrt(q22) z2 with
    corr(z1, z2) = ρ, Mehler's formula gives
    E[g(u) h(v)] = Σ_k g_k(q11) h_k(q22) ρ^k, where
    g_k(q) = E[g(sqrt(q) Z) ψ_k(Z)] and ψ_k = He_k / sqrt(k!) are the
    orthonormal Hermite polynomials.  The coefficients come from composite
    Gauss–Legendre rules graded towards 0, where σ(sqrt(q) z) has its
    structure, at every variance.  The series is separable, so a tile costs K
    multiply-adds per entry (half that when σ is odd or even up to a
    constant and a linear term, as tanh, sigmoid and softplus are: the
    series then runs in ρ²).

    **Its error bound.**  By Cauchy–Schwarz the series truncated after K
    terms is off by at most |ρ|^K sqrt(t(q11) t(q22)) relative to
    sqrt(E[g²] E[h²]), where t(q) = 1 − Σ_{k<K} g_k² / E[g²] is the relative
    Parseval tail, known exactly.  K is the smallest number of terms with
    t <= QUADRATURE_TOLERANCE at the largest variance of the layer, at most
    ``_MAX_TERMS``.

    **Large variance and kinks.**  The terms needed grow in proportion to
    the variance for a saturating σ (tanh needs ~70 q), and without bound
    for a kinked σ.  Then K = ``_MAX_TERMS`` and each point gets the
    correlation ρ0 = (tol / t)^(1/K) up to which the bound still meets the
    tolerance (ρ0 >= 0.978 for K = 1024); the pairs with |ρ| above it for
    either point (typically near-duplicates, a small fraction) are computed
    one at a time by nested composite rules refined at the kinks and
    transitions of the integrand
    (:func:`~sklearn_ntk._gaussian_expectations.bivariate_expectations`),
    whose cost (~1e6 multiply-adds a pair) does not depend on the variance.  A tile with
    many such pairs (inputs dominated by a large bias) is summed again with
    a longer series, computed once per layer, where that is cheaper.

    **Gradients** come from Price's theorem and Stein's lemma (see
    ``_STEIN``): they need σ, σ' and σ'' only, plus, for a jump J of σ' at
    0, the closed-form contribution of the Dirac mass it puts in σ''
    (E[δ(u)δ(v)] = 1/(2π sqrt(q11 q22 (1 − ρ²)))).

    **Accuracy**, measured against scipy's adaptive quadrature
    (``tests/test_quadrature.py``) for variances 1e-6 to 1e8: k and kdot
    within 1e-10 relative for smooth σ (the series' bound; the rules are
    good to 1e-12) and 1e-12 for callables with kinks at 0; tangents within
    1e-9 (smooth) and 1e-7 (kinked), relative.

    Parameters
    ----------
    name : str
    derivatives : callable
        ``derivatives(x, order)`` returns σ^(order)(x) for order 0..3.  An
        optional method ``many(x, orders)`` returns several orders from one
        evaluation, and an attribute ``jumps`` = (J1, J2) the jumps of σ' and
        σ'' at 0 (default: none, σ smooth).
    """

    workspace_size = 4

    def __init__(self, name, derivatives):
        self.name = name
        self._derivatives = derivatives

    def function(self, x):
        return self._derivatives(np.asarray(x, dtype=float), 0)

    def derivative(self, x):
        return self._derivatives(np.asarray(x, dtype=float), 1)

    @property
    def jumps(self):
        """Jumps (J1, J2) of σ' and σ'' at 0; (0, 0) for a smooth σ."""
        return tuple(getattr(self._derivatives, "jumps", (0.0, 0.0)))

    # -- pointwise families ------------------------------------------------
    def _evaluate(self, x, families):
        """Array (len(families),) + x.shape of the families at x."""
        x = np.asarray(x, dtype=float)
        orders = sorted(
            {f for f in families if f <= _THIRD}
            | ({_SLOPE} if _U_SLOPE in families else set())
            | ({_CURVATURE} if _U_CURVATURE in families else set())
        )
        many = getattr(self._derivatives, "many", None)
        if many is None:
            computed = [self._derivatives(x, order) for order in orders]
        else:
            computed = many(x, orders)
        values = dict(zip(orders, computed))
        out = np.empty((len(families),) + x.shape)
        for index, family in enumerate(families):
            if family <= _THIRD:
                out[index] = values[family]
            elif family == _U_SLOPE:
                np.multiply(x, values[_SLOPE], out=out[index])
            else:
                np.multiply(x, values[_CURVATURE], out=out[index])
        return out

    def _expectations(self, integrand, scales, check=True):
        """E[integrand(a Z)] for each scale a, checked for convergence.

        The check allows 1e-9 relative: finite differences of a callable
        differ by ~1e-10 between the two rules' nodes, while a kink the rules
        do not resolve leaves errors of order 1e-5.
        """
        try:
            return normal_expectations(integrand, scales, check=check, rtol=1e-9)
        except NotConvergedError as error:
            raise ValueError(
                f"The Gaussian expectations of activation {self.name!r} did not "
                f"converge ({error}). The numerical path resolves kinks at 0 "
                "and structure of width ~1 near 0; a callable with kinks "
                "elsewhere, or oscillating on a scale much finer than the "
                "pre-activations' spread, is not supported; nor are "
                "pre-activation variances far beyond 1e8. Standardise the inputs "
                "(e.g. with sklearn.preprocessing.StandardScaler), or lower "
                "weight_std and beta."
            ) from None

    # -- series --------------------------------------------------------------
    def _gradient_pairs(self):
        """The pairs of families the tangents need (see _STEIN)."""
        return _STEIN + (_STEIN_DELTA if self.jumps[0] != 0 else ())

    def _coefficients(self, scales, families, n_terms, n_levels):
        """Coefficients (n, F, n_terms) and second moments (n, F) of families.

        Short series integrate every family.  Long ones (large variance)
        integrate σ alone, to n_terms + 3, and derive the others exactly:
        σ^(m+1) by Gaussian integration by parts and u f(u) by the
        recurrence of z ψ_k (see :func:`derivative_coefficients` and
        :func:`argument_times`); at scale a their rounding grows like
        (sqrt(K)/a)^m, so points with a < 1 are integrated family by family.
        """
        scales = np.asarray(scales, dtype=float)
        coefficients = np.empty((scales.size, len(families), n_terms))
        moments = np.empty((scales.size, len(families)))
        derived = (scales >= 1.0) & (n_terms > CACHED_TERMS)
        direct = ~derived
        if direct.any():
            coefficients[direct], moments[direct] = hermite_coefficients(
                lambda u: self._evaluate(u, families), scales[direct], n_terms,
                n_levels)
        if derived.any():
            a = scales[derived]
            values, _ = hermite_coefficients(
                lambda u: self._evaluate(u, (_VALUE,)), a, n_terms + 3, n_levels)
            chain = [values[:, 0]]
            for _ in range(3):
                chain.append(derivative_coefficients(chain[-1], a))
            j1 = self.jumps[0]
            if j1 != 0:
                # σ'' by parts holds the Dirac mass J1 δ; the families want
                # its regular part (the mass is added in closed form).
                width = chain[2].shape[1]
                delta = hermite_at_zero(width) / np.sqrt(2.0 * np.pi) / a[:, None]
                chain[2] = chain[2] - j1 * delta
            table = {
                _VALUE: chain[0], _SLOPE: chain[1], _CURVATURE: chain[2],
                _THIRD: chain[3], _U_SLOPE: argument_times(chain[1], a),
                _U_CURVATURE: argument_times(chain[2], a),
            }
            coefficients[derived] = np.stack(
                [table[family][:, :n_terms] for family in families], axis=1)
            moments[derived] = self._expectations(
                lambda u: self._evaluate(u, families) ** 2, a, check=False).T
        return coefficients, moments

    def _n_terms(self, scales, families, n_levels, most):
        """Smallest K whose Parseval tail meets the tolerance at the largest
        scale, at most ``most``; checks first that the rules resolve σ."""
        scales = np.asarray(scales, dtype=float)
        if not scales.size:
            return 1
        extremes = np.array([scales.max(), scales.min()])
        # σ and σ' show every kink the rules miss (a kink of |u − c| hides in
        # σ² and σ'², not in σ'); σ'' may be rounding noise.

        def moments(u):
            values = self._evaluate(u, (_VALUE, _SLOPE))
            return np.concatenate([values, values * values])

        self._expectations(moments, extremes)
        for candidate in sorted({min(128, most), min(CACHED_TERMS, most), most}):
            coefficients, moments = self._coefficients(
                extremes[:1], families, candidate, n_levels)
            tails = moments[0][:, None] - np.cumsum(coefficients[0] ** 2, axis=1)
            accurate = np.all(tails <= QUADRATURE_TOLERANCE * moments[0][:, None],
                              axis=0)
            if accurate.any():
                return int(np.argmax(accurate)) + 1
        return most

    def _series(self, scales, families, pairs, n_levels, n_terms=None):
        """Coefficients (n, F, K), hot-pair thresholds (n,) and plans.

        ``n_terms`` None: the shortest series whose Parseval tail meets the
        tolerance at the largest scale, at most _MAX_TERMS.
        """
        smooth = tuple(f for f in families if f != _DELTA)
        if n_terms is None:
            n_terms = self._n_terms(scales, smooth, n_levels, _MAX_TERMS)
        coefficients, moments = self._coefficients(scales, smooth, n_terms, n_levels)
        # Relative Parseval tails, the worst over the families, per point.
        with np.errstate(divide="ignore", invalid="ignore"):
            tails = (moments - np.einsum("nfk,nfk->nf", coefficients, coefficients))
            relative = np.where(moments > 0, tails / moments, 0.0).max(axis=1)
            thresholds = np.where(
                relative > QUADRATURE_TOLERANCE,
                (QUADRATURE_TOLERANCE / relative) ** (1.0 / n_terms),
                np.inf,
            )
        supports = {
            family: support(coefficients[:, index], moments[:, index])
            for index, family in enumerate(smooth)
        }
        if _DELTA in families:
            # δ(sqrt(q) z) has coefficients φ(0) ψ_k(0) / sqrt(q).
            with np.errstate(divide="ignore"):
                inverse = np.where(scales > 0, 1.0 / scales, 0.0)
            delta = (inverse[:, None] / np.sqrt(2.0 * np.pi)) * hermite_at_zero(n_terms)
            coefficients = np.concatenate([coefficients, delta[:, None, :]], axis=1)
            supports[_DELTA] = (True, False, True, False)
        plans = {pair: series_plan(supports[pair[0]], supports[pair[1]])
                 for pair in pairs}
        return coefficients, thresholds, plans

    def _layer(self, scales, families, pairs, n_levels):
        coefficients, thresholds, plans = self._series(scales, families, pairs,
                                                       n_levels)
        order = tuple(f for f in families if f != _DELTA) + (
            (_DELTA,) if _DELTA in families else ())
        layer = _Layer(self, scales, order, plans, coefficients.shape[-1], n_levels)
        return coefficients, thresholds, np.full(scales.size, layer, dtype=object)

    def prepare(self, variances, eval_gradient=False):
        """One :class:`NumericalFeatures` per point set.

        All point sets share one series per layer.  The values take the same
        series with and without eval_gradient, so that K is the same bit for
        bit.
        """
        variances = [np.asarray(q, dtype=float) for q in variances]
        q = np.concatenate(variances) if variances else np.empty(0)
        scales = np.sqrt(q)
        n_levels = feature_levels(scales)
        coefficients, threshold, layer = self._layer(
            scales, (_VALUE, _SLOPE), _VALUE_PAIRS, n_levels)
        parts = [q, coefficients, snapped_inverse_sqrt(q), threshold, layer,
                 np.arange(q.size)]
        if eval_gradient:
            pairs = self._gradient_pairs()
            families = tuple(sorted({f for pair in pairs for f in pair}))
            parts += self._layer(scales, families, pairs, n_levels)
        boundaries = np.cumsum([v.size for v in variances])[:-1]
        pieces = (np.split(part, boundaries) for part in parts)
        return [NumericalFeatures(*point_set) for point_set in zip(*pieces)]

    @staticmethod
    def _hot(rho, rows_threshold, cols_threshold, scratch):
        """(i, j) of the pairs the series is not accurate enough for, or None."""
        lowest = min(rows_threshold.min(initial=np.inf),
                     cols_threshold.min(initial=np.inf))
        if not np.isfinite(lowest):
            return None
        magnitude = np.abs(rho, out=scratch)
        if magnitude.max(initial=0.0) <= lowest:
            return None
        mask = magnitude > rows_threshold[:, None]
        mask |= magnitude > cols_threshold[None, :]
        rows, cols = np.nonzero(mask)
        return (rows, cols) if rows.size else None

    def _pairs(self, q11, q22, rho, pairs):
        """E[f(u) g(v)] for each (f, g) in pairs, one entry at a time."""
        values = np.empty((len(pairs), rho.size))
        plain = [index for index, pair in enumerate(pairs) if _DELTA not in pair]
        values[plain] = bivariate_expectations(
            np.sqrt(q11), np.sqrt(q22), rho, self._evaluate, [pairs[i] for i in plain])
        if len(plain) < len(pairs):
            left, right = self._delta_pairs(q11, q22, rho)
            for index, pair in enumerate(pairs):
                if pair == _STEIN_DELTA[0]:
                    values[index] = left
                elif pair == _STEIN_DELTA[1]:
                    values[index] = right
        return values

    def _delta_pairs(self, q11, q22, rho):
        """E[δ(u) σ''(v)] and E[σ''(u) δ(v)], one entry at a time.

        Given u = 0, v ~ N(0, q22 (1 − ρ²)), and u has density φ(0)/sqrt(q11) at 0.
        """
        a, b = np.sqrt(q11), np.sqrt(q22)
        s = np.sqrt(np.maximum((1.0 - rho) * (1.0 + rho), 0.0))
        curvature = lambda u: self._evaluate(u, (_CURVATURE,))  # noqa: E731
        with np.errstate(divide="ignore"):
            left = np.where(a > 0, 1.0 / a, 0.0) * self._expectations(
                curvature, b * s, check=False)[0]
            right = np.where(b > 0, 1.0 / b, 0.0) * self._expectations(
                curvature, a * s, check=False)[0]
        return left / np.sqrt(2.0 * np.pi), right / np.sqrt(2.0 * np.pi)

    def _longer(self, layer, rho, hot, n_series):
        """A longer series for a tile with many pairs beyond the layer's, or None.

        Inputs dominated by a large bias have correlations that all approach
        1 at large variance; the nested rules would cost _PAIR_SECONDS each.  The
        tile is then summed again with the shortest series (a power of 2) whose
        bound |ρ|^K <= tol covers all but 1/64 of those pairs, if that costs
        less: K·n_series multiply-adds per entry of the tile, _TERM_SECONDS each
        (the coefficients, computed once per layer by :meth:`_Layer.longer`,
        must fit _MEMORY_TERMS).  Returns (coefficients by degree, thresholds,
        plans) or None.
        """
        magnitude = np.abs(rho[hot])
        magnitude = np.sort(magnitude[magnitude < 1.0])  # |ρ| = 1 is one-dimensional
        if magnitude.size < _LONGER_SERIES:
            return None
        target = magnitude[-1 - magnitude.size // 64]
        wanted = math.log(QUADRATURE_TOLERANCE) / math.log(max(target, 1e-300))
        budget = _MEMORY_TERMS // max(1, layer.scales.size * len(layer.families))
        n_terms = min(1 << max(0, math.ceil(math.log2(max(wanted, 1.0)))), budget,
                      _LONGEST)
        if n_terms <= layer.n_terms:
            return None
        series_seconds = rho.size * n_terms * n_series * _TERM_SECONDS
        if magnitude.size * _PAIR_SECONDS < series_seconds:
            return None
        return layer.longer(n_terms)

    def _tile_series(self, rows, cols, rho, rho2, layer, coefficients, thresholds,
                     outputs, scratch):
        """The series of every pair of ``layer.plans`` on a tile, hot pairs patched.

        Sums each pair's Mehler series; where the tile has many pairs beyond the
        series' reach, sums it once more with the longer series of
        :meth:`_longer`; the pairs still beyond reach then get nested
        quadrature.  ``coefficients`` and ``thresholds`` are the (rows, cols)
        arrays of ``layer``; ``outputs`` maps pairs to arrays to sum into (the
        others are new) and ``scratch`` is a tile-sized array.  Returns
        {pair: (n_rows, n_cols) array}.
        """
        id_rows, id_cols = rows.index, cols.index
        left, right = (_by_degree(part) for part in coefficients)
        threshold_rows, threshold_cols = thresholds
        plans = layer.plans
        for attempt in range(2):
            series = {
                pair: mehler(rho, rho2, left[layer.index(pair[0])],
                             right[layer.index(pair[1])], plan, outputs.get(pair),
                             scratch)
                for pair, plan in plans.items()
            }
            # A second summation overwrites the first's arrays.
            outputs = series
            hot = self._hot(rho, threshold_rows, threshold_cols, scratch)
            longer = (None if hot is None or attempt
                      else self._longer(layer, rho, hot, len(plans) / 2))
            if longer is None:
                break
            by_degree, longer_thresholds, plans = longer
            left, right = by_degree[:, :, id_rows], by_degree[:, :, id_cols]
            threshold_rows = longer_thresholds[id_rows]
            threshold_cols = longer_thresholds[id_cols]
        if hot is not None:
            i, j = hot
            pairs = list(plans)
            values = self._pairs(rows.variance[i], cols.variance[j], rho[i, j], pairs)
            for pair, value in zip(pairs, values):
                series[pair][i, j] = value
        return series

    def _dual(self, rows, cols, cov, scale, workspace):
        rho_buffer, kdot_buffer, term_buffer, rho2_buffer = workspace
        rho = correlation(cov, rows.inverse_root, cols.inverse_root, out=rho_buffer)
        rho2 = np.multiply(rho, rho, out=rho2_buffer)
        # cov is no longer needed once rho is formed: k goes there.
        series = self._tile_series(
            rows, cols, rho, rho2, rows.layer[0],
            (rows.coefficients, cols.coefficients), (rows.threshold, cols.threshold),
            {(_VALUE, _VALUE): cov, (_SLOPE, _SLOPE): kdot_buffer}, term_buffer)
        k, kdot = series[_VALUE, _VALUE], series[_SLOPE, _SLOPE]
        if scale != 1.0:
            k *= scale
            kdot *= scale
        return k, kdot

    def _dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        rho = correlation(cov, rows.inverse_root, cols.inverse_root)
        series = self._tile_series(
            rows, cols, rho, rho * rho, rows.gradient_layer[0],
            (rows.gradient_coefficients, cols.gradient_coefficients),
            (rows.gradient_threshold, cols.gradient_threshold), {}, np.empty_like(rho))
        return self._stein_tangents(series, rows.variance, cols.variance, cov, rho,
                                    d_rows, d_cols, d_cov)

    def _stein_tangents(self, s, q_rows, q_cols, cov, rho, d_rows, d_cols, d_cov):
        """Tangents from Stein's lemma: with rates dq/q and √(q11 q22) dρ =
        dq12 − q12 (dq11/q11 + dq22/q22)/2,
        dk = [E[uσ'σ] dq11/q11 + E[σ vσ'] dq22/q22]/2 + E[σ'σ'] √(q11 q22) dρ,
        and alike for kdot with σ' and E[σ''σ''], which holds the Dirac
        masses of a jump J of σ' at 0: J² E[δδ] + J (E[δ σ''] + E[σ'' δ]).
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            rate_rows = np.where(q_rows > 0, d_rows / q_rows, 0.0)[:, :, None]
            rate_cols = np.where(q_cols > 0, d_cols / q_cols, 0.0)[:, None, :]
        angular = d_cov - 0.5 * cov[None] * (rate_rows + rate_cols)
        dk = (0.5 * (s[_U_SLOPE, _VALUE][None] * rate_rows
                     + s[_VALUE, _U_SLOPE][None] * rate_cols)
              + s[_SLOPE, _SLOPE][None] * angular)
        curvature = s[_CURVATURE, _CURVATURE]
        j1 = self.jumps[0]
        if j1 != 0:
            curvature = curvature + j1 * (s[_STEIN_DELTA[0]] + s[_STEIN_DELTA[1]])
        dkdot = (0.5 * (s[_U_CURVATURE, _SLOPE][None] * rate_rows
                        + s[_SLOPE, _U_CURVATURE][None] * rate_cols)
                 + curvature[None] * angular)
        if j1 != 0:
            # J² E[δ(u)δ(v)] √(q11 q22) = J² / (2π sqrt(1 − ρ²)); dρ = 0 where ρ = ±1.
            sine = np.sqrt(np.maximum((1.0 - rho) * (1.0 + rho), 0.0))
            sine *= np.sqrt(np.multiply.outer(q_rows, q_cols))
            with np.errstate(divide="ignore", invalid="ignore"):
                mass = np.where(sine > 0, j1 * j1 / (2.0 * np.pi * sine), 0.0)
            dkdot += mass[None] * angular
        return dk, dkdot

    # -- the diagonal (correlation exactly 1) --------------------------------
    def _dual_diag(self, q):
        values = self._expectations(
            lambda u: self._evaluate(u, (_VALUE, _SLOPE)) ** 2, np.sqrt(q)
        )
        return values[0], values[1]

    def _dual_diag_tangents(self, q, dq):
        def integrand(u):
            f = self._evaluate(u, (_VALUE, _SLOPE, _CURVATURE))
            return np.stack([f[0] * f[0], f[1] * f[1], u * f[0] * f[1],
                             u * f[1] * f[2]])

        values = self._expectations(integrand, np.sqrt(q), check=2)
        # Heat equation and Stein: d/dq E[F(sqrt(q) Z)] = E[F''(u)]/2 =
        # E[u F'(u)]/(2q), with F = σ² and σ'², so only σ'' is needed.
        with np.errstate(divide="ignore", invalid="ignore"):
            rates = np.where(q > 0, values[2:] / q, 0.0)
        if np.any(q == 0):
            # The limit q → 0+: F''(0)/2, averaged over the two sides of 0.
            sides = np.array([-1e-300, 1e-300])
            f = self._evaluate(sides, (_VALUE, _SLOPE, _CURVATURE, _THIRD))
            at_zero = np.array([
                np.mean(f[1] * f[1] + f[0] * f[2]),
                np.mean(f[2] * f[2] + f[1] * f[3]),
            ])
            rates[:, q == 0] = at_zero[:, None]
        return values[0], values[1], rates[0] * dq, rates[1] * dq


def _family(function):
    """Wrap ``function(x, orders) -> list`` as ``derivatives(x, order)``."""

    class Derivatives:
        jumps = (0.0, 0.0)

        def __call__(self, x, order):
            return function(np.asarray(x, dtype=float), (order,))[0]

        many = staticmethod(function)

        def __reduce__(self):
            return _family, (function,)

    return Derivatives()


def _tanh_family(x, orders):
    t = np.tanh(x)
    slope = 1.0 - t * t
    table = {
        0: lambda: t,
        1: lambda: slope,
        2: lambda: -2.0 * t * slope,
        3: lambda: slope * (6.0 * t * t - 2.0),
    }
    return [table[order]() for order in orders]


def _sigmoid_family(x, orders):
    s = expit(x)
    slope = s * (1.0 - s)
    table = {
        0: lambda: s,
        1: lambda: slope,
        2: lambda: slope * (1.0 - 2.0 * s),
        3: lambda: slope * (1.0 - 6.0 * slope),
    }
    return [table[order]() for order in orders]


def _softplus_family(x, orders):
    shifted = [order - 1 for order in orders if order > 0]
    sigmoid = iter(_sigmoid_family(x, shifted)) if shifted else iter(())
    return [np.logaddexp(0.0, x) if order == 0 else next(sigmoid) for order in orders]


#: The named activations without a closed form, in the registry's order.
NUMERICAL_ACTIVATIONS = {
    "tanh": QuadratureActivation("tanh", _family(_tanh_family)),
    "sigmoid": QuadratureActivation("sigmoid", _family(_sigmoid_family)),
    "softplus": QuadratureActivation("softplus", _family(_softplus_family)),
}


def _stencil(offsets, order):
    """Weights c with Σ c_i f(x + o_i h) = h^order f^(order)(x) for every
    polynomial f of degree < len(offsets)."""
    offsets = np.asarray(offsets, dtype=float)
    powers = np.vander(offsets, offsets.size, increasing=True).T
    right = np.zeros(offsets.size)
    right[order] = math.factorial(order)
    return offsets, np.linalg.solve(powers, right)


# Finite-difference stencils of fourth order: central ones, and one-sided
# ones for points within a central stencil's reach of a kink at 0.
_CENTRAL = {order: _stencil(range(-2 - (order > 2), 3 + (order > 2)), order)
            for order in (1, 2, 3)}
_ONE_SIDED = {order: _stencil(range(order + 4), order) for order in (1, 2, 3)}


class _CallableDerivatives:
    """Derivatives of a user callable by finite differences.

    Fourth-order stencils with steps h = eps^(1/(order + 4)) · max(1, |x|),
    which balance truncation against rounding: σ' is accurate to about
    1e-12, σ'' to 1e-10 and σ''' (used only by gradients of smooth σ) to about
    1e-9, relative, for smooth σ.  If σ' or σ'' jumps at 0 (relu-like
    callables, relu²), points within a stencil's reach of 0 use one-sided
    stencils, so that no difference straddles the kink; ``jumps`` holds the
    jumps, measured once by one-sided differences at 0.  Kinks elsewhere
    are not detected.
    """

    def __init__(self, function):
        self.function = function
        self._jumps = None

    def _call(self, x):
        return np.asarray(self.function(x), dtype=float)

    @staticmethod
    def _step(order, x):
        return np.finfo(float).eps ** (1.0 / (order + 4)) * np.maximum(1.0, np.abs(x))

    def _difference(self, x, order, stencil, step):
        offsets, weights = stencil
        total = np.zeros_like(x)
        for offset, weight in zip(offsets, weights):
            if weight:
                total += weight * self._call(x + offset * step)
        return total / step**order

    @property
    def jumps(self):
        """(J1, J2): the jumps of σ' and σ'' at 0, 0 where below 1e-6 relative."""
        if self._jumps is None:
            # The size of σ and its derivatives near 0, per unit of u.
            probe = np.array([-1.0, -0.5, 0.5, 1.0])
            size = np.abs(self._call(probe)).max()
            jumps = []
            for order in (1, 2):
                step = self._step(order, np.zeros(1))
                right = self._difference(np.zeros(1), order, _ONE_SIDED[order], step)
                left = self._difference(np.zeros(1), order, _ONE_SIDED[order], -step)
                size = max(size, np.abs(right[0]), np.abs(left[0]), np.abs(
                    self._difference(probe, order, _CENTRAL[order],
                                     self._step(order, probe))).max())
                jump = float(right[0] - left[0])
                jumps.append(jump if abs(jump) > 1e-6 * size else 0.0)
            self._jumps = tuple(jumps)
        return self._jumps

    def many(self, x, orders):
        x = np.asarray(x, dtype=float)
        kinked = any(self.jumps)
        results = []
        for order in orders:
            if order == 0:
                results.append(self._call(x))
                continue
            step = self._step(order, x)
            values = self._difference(x, order, _CENTRAL[order], step)
            if kinked:
                reach = np.abs(_CENTRAL[order][0]).max()
                # At ±0 the sign bit picks the side: a rule at variance 0
                # (nodes ±z times 0) then averages the two one-sided values,
                # the limit of E[σ'(sqrt(q) Z)] as q → 0.
                near = np.abs(x) < reach * step
                if near.any():
                    one_sided = np.where(np.signbit(x[near]), -step[near], step[near])
                    values[near] = self._difference(x[near], order, _ONE_SIDED[order],
                                                    one_sided)
            results.append(values)
        return results

    def __call__(self, x, order):
        return self.many(x, (order,))[0]




def callable_activation(function, name):
    """The activation of a user callable σ, by the numerical path.

    Its derivatives come from finite differences (:class:`_CallableDerivatives`).
    """
    return QuadratureActivation(name, _CallableDerivatives(function))
