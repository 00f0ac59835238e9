"""Activation functions and their dual kernels.

The NTK/NNGP recursion needs, for each activation σ and each pair of
pre-activations (u, v) ~ N(0, [[q11, q12], [q12, q22]]), the two Gaussian
expectations

    k(q11, q22, q12)    = E[σ(u) σ(v)]
    kdot(q11, q22, q12) = E[σ'(u) σ'(v)]

and, for the analytic hyperparameter gradients, their directional derivatives
(Jacobian-vector products) with respect to (q11, q22, q12).

Every activation is one entry of ``_REGISTRY``; the recursion in
``sklearn_ntk._recursion`` never looks at which activation it is handling.
Activations with a closed form (relu, leaky_relu, abs, erf, identity, gelu,
sin, cos) implement it directly.  All others (tanh, sigmoid, softplus, a user
callable) go through :class:`QuadratureActivation`, which expands σ in
Hermite polynomials (Mehler's formula), with as many terms as an exact bound
on the truncation error asks for, and takes the pairs beyond the series'
reach (large variance, kinks) one by one by nested quadrature
(:mod:`sklearn_ntk._gaussian_expectations`).

Every dual method works on a *tile*: ``rows`` and ``cols`` are the per-point
features returned by :meth:`prepare` for the row points and the column points,
and ``cov`` is the (n_rows, n_cols) array of q12.  Tangents carry a leading
axis of length 2, one per hyperparameter direction.
"""

import math
import threading

import numpy as np
from scipy.special import erf, expit

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

_TWO_PI = 2.0 * np.pi
#: Each point's factor of rho is scaled by 1 + 4 eps, so rho by (1 + 4 eps)²,
#: which rounds to 1 + 8 eps (see _snapped_inverse_sqrt).
_SNAP_SCALE = 1.0 + 4.0 * np.finfo(float).eps


def _inverse_sqrt(q):
    """1/sqrt(q), with 0 where q == 0 (a zero-variance point)."""
    root = np.sqrt(q)
    inverse = np.zeros_like(root)
    np.divide(1.0, root, out=inverse, where=root > 0)
    return root, inverse


def _snapped_inverse_sqrt(q):
    """Per-point factor of the correlation: 1/sqrt(q), times 1 + 4 eps.

    Duplicated or rescaled points have |rho| = 1 exactly, but rounding leaves
    1 - O(eps), which arccos amplifies to an angle of ~sqrt(eps) = 1e-8.  An
    angle that small is not resolvable from rounded inputs anyway, so rho,
    the product of a row's and a column's factor, is scaled by 1 + 8 eps
    before clipping: everything within 8 ulps of ±1 snaps to ±1, and nothing
    else moves by more than rounding does.
    """
    _, inverse = _inverse_sqrt(q)
    inverse *= _SNAP_SCALE
    return inverse


def _correlation(cov, inverse_rows, inverse_cols, out=None):
    """Return rho = q12 / sqrt(q11 q22) clipped to [-1, 1].

    ``inverse_rows`` and ``inverse_cols`` come from :func:`_snapped_inverse_sqrt`,
    so the per-entry work is two multiplications.  Rows or columns of zero
    variance (a zero input with beta = 0) have an undefined correlation; their
    zero factor sets it to 0, i.e. an angle of pi/2, as in neural-tangents.
    """
    rho = np.multiply(cov, inverse_rows[:, None], out=out)
    rho *= inverse_cols[None, :]
    # The method rather than np.clip, whose Python wrapper holds the GIL
    # for 2 µs a call: per tile, that shows in the scaling with n_jobs.
    rho.clip(-1.0, 1.0, out=rho)
    return rho


def _correlation_tangents(cov, rho, q_rows, q_cols, d_rows, d_cols, d_cov):
    """(s, dρ, 1/q11, 1/q22): s = sqrt(q11 q22), dρ its tangents, shape (2, ...).

    dρ = dq12 / s − (ρ/2)(dq11/q11 + dq22/q22), 0 where ρ was snapped to ±1:
    those pairs are duplicates (or antipodes) to rounding, for which dρ is 0
    exactly, while the formula would leave rounding noise of relative size
    eps/(1 − |ρ|).  Zero-variance points get 0 (their ρ is defined as 0).
    """
    sqrt_rows, inverse_sqrt_rows = _inverse_sqrt(q_rows)
    sqrt_cols, inverse_sqrt_cols = _inverse_sqrt(q_cols)
    inverse_rows, inverse_cols = inverse_sqrt_rows**2, inverse_sqrt_cols**2
    s = np.multiply.outer(sqrt_rows, sqrt_cols)
    d_rho = d_cov * inverse_sqrt_rows[:, None] * inverse_sqrt_cols[None, :]
    d_rho -= 0.5 * rho * (d_rows[:, :, None] * inverse_rows[:, None]
                          + d_cols[:, None, :] * inverse_cols[None, :])
    d_rho[:, np.abs(rho) == 1.0] = 0.0
    return s, d_rho, inverse_rows, inverse_cols


class Activation:
    """Base class of an activation with its dual kernels.

    Subclasses implement :meth:`dual`, :meth:`dual_tangents`, :meth:`dual_diag`
    and :meth:`dual_diag_jvp` and the pointwise :meth:`function` and
    :meth:`derivative` used by finite networks.
    """

    name = None

    #: Whether σ is positively homogeneous of degree 1 (σ(c x) = c σ(x) for
    #: c > 0).  Then the kernels satisfy K(X; β, σ_w) = s² K(X/s; β/s, σ_w),
    #: which the recursion uses to bring any input scale into range.
    homogeneous = False

    #: Side of the tiles the recursion cuts for this activation (None: its
    #: default, which depends on :attr:`workspace_size`).
    tile_size = None

    #: Scratch arrays shaped like a tile that :meth:`dual` computes in; 0 for
    #: an activation that allocates its own temporaries.  Fresh tile-sized
    #: temporaries cost page faults on every tile, as glibc hands the memory
    #: back and forth with the system, so the common activations work in place.
    workspace_size = 0

    def prepare(self, variances, eval_gradient=False):
        """Per-point features for one layer.

        Parameters
        ----------
        variances : list of ndarray of shape (n_points,)
            Pre-activation variances q(x, x) of each point set (e.g. X and Y).
        eval_gradient : bool
            Whether :meth:`dual_tangents` will be called.

        Returns
        -------
        features : list
            One entry per point set; a tuple of arrays whose first axis
            indexes the points, so a slice of rows is
            ``tuple(a[i0:i1] for a in features)``.
        """
        return [(np.asarray(q),) for q in variances]

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        """Return (scale · k, scale · kdot) for a tile.

        ``workspace``, given only when :attr:`workspace_size` > 0, is a list
        of that many scratch arrays shaped like ``cov``; the computation then runs in them
        and returns k in ``cov`` itself and kdot in a member of
        ``workspace``, so the caller's buffers never change roles.  Without a
        workspace, ``cov`` is left untouched and both are new arrays.
        ``scale`` (the recursion's σ_w²) is folded in where that saves a pass.
        """
        k, kdot = self._dual(rows, cols, cov)
        if scale != 1.0:
            k *= scale
            kdot *= scale
        return k, kdot

    def _dual(self, rows, cols, cov):
        """Return (k, kdot) for a tile, in new arrays."""
        raise NotImplementedError

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        """Return (dk, dkdot), the tangents of the unscaled k and kdot.

        ``d_rows`` (2, n_rows), ``d_cols`` (2, n_cols) and ``d_cov``
        (2, n_rows, n_cols) are the tangents of q11, q22 and q12 along the
        two hyperparameter directions.  ``cov`` is left untouched.  The values
        themselves always come from :meth:`dual`, so that K is the same bit
        for bit with and without gradients.
        """
        raise NotImplementedError

    def dual_diag(self, q):
        """Return (k, kdot) at q11 = q22 = q12 = q (correlation exactly 1)."""
        raise NotImplementedError

    def dual_diag_jvp(self, q, dq):
        """Return (k, kdot, dk, dkdot) on the diagonal; dq has shape (2, n)."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class PiecewiseLinearActivation(Activation):
    """σ(x) = a·min(x, 0) + b·max(x, 0): relu, leaky_relu and abs.

    With C = (a − b)²/2π, A = (a² + b²)/2 and θ = arccos ρ:
    k = C·s·sin θ + (A − C θ) q12 and kdot = A − C θ (arc-cosine kernels).
    """

    homogeneous = True

    def __init__(self, name, negative_slope, positive_slope):
        self.name = name
        self.negative_slope = negative_slope
        self.positive_slope = positive_slope
        self._c = (negative_slope - positive_slope) ** 2 / _TWO_PI
        self._a = (negative_slope**2 + positive_slope**2) / 2.0

    def function(self, x):
        return np.where(x > 0, self.positive_slope * x, self.negative_slope * x)

    def derivative(self, x):
        return np.where(x > 0, self.positive_slope, self.negative_slope) * np.ones_like(x)

    def prepare(self, variances, eval_gradient=False):
        # (q, sqrt q, snapped 1/sqrt q) per point, once per layer: per-point
        # work in a tile holds the GIL between its array passes.
        variances = [np.asarray(q, dtype=float) for q in variances]
        return [(q, np.sqrt(q), _snapped_inverse_sqrt(q)) for q in variances]

    workspace_size = 3

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        in_place = workspace is not None
        if not in_place:
            workspace = [np.empty_like(cov) for _ in range(self.workspace_size)]
        rho = _correlation(cov, rows[2], cols[2], out=workspace[0])
        theta = np.arccos(rho, out=workspace[1])
        # sin(arccos rho) = sqrt(1 - rho²), ~7x cheaper than calling sin.
        # Near rho = ±1 its rounding error (vs sqrt((1 - rho)(1 + rho))) is
        # far below the effect of the rounding and snapping of rho itself.
        sin_theta = np.multiply(rho, rho, out=workspace[2])
        np.subtract(1.0, sin_theta, out=sin_theta)
        np.sqrt(sin_theta, out=sin_theta)
        sin_theta *= (rows[1] * (self._c * scale))[:, None]
        sin_theta *= cols[1]
        kdot = theta
        kdot *= -self._c * scale
        kdot += self._a * scale
        k = np.multiply(kdot, cov, out=cov if in_place else rho)
        k += sin_theta
        return k, kdot

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        k, kdot = self.dual(rows, cols, cov)
        q_rows, q_cols = rows[0], cols[0]
        rho = _correlation(cov, rows[2], cols[2])
        sqrt_rows, inverse_sqrt_rows = _inverse_sqrt(q_rows)
        sqrt_cols, inverse_sqrt_cols = _inverse_sqrt(q_cols)
        half_c_sin = np.add(1.0, rho)
        half_c_sin *= 1.0 - rho
        np.sqrt(half_c_sin, out=half_c_sin)
        # dkdot = -C dθ = C dρ / sin θ; dρ vanishes where sin θ does (ρ = ±1).
        c_over_sin = np.zeros_like(half_c_sin)
        np.divide(self._c, half_c_sin, out=c_over_sin, where=half_c_sin > 0)
        half_c_sin *= 0.5 * self._c
        dk = np.empty_like(d_cov)
        dkdot = np.empty_like(d_cov)
        term = np.empty_like(cov)
        for direction in range(d_cov.shape[0]):
            # Price: dk/dq12 = kdot and dk/dq11 = (C/2) sin θ sqrt(q22/q11), so
            # dk = (C/2) sin θ [sqrt(q22) dq11/sqrt(q11) + sqrt(q11) dq22/sqrt(q22)]
            #      + kdot dq12, as two rank-one outer products.
            row_rates = d_rows[direction] * inverse_sqrt_rows
            col_rates = d_cols[direction] * inverse_sqrt_cols
            np.multiply.outer(row_rates, sqrt_cols, out=dk[direction])
            np.multiply.outer(sqrt_rows, col_rates, out=term)
            dk[direction] += term
            dk[direction] *= half_c_sin
            np.multiply(kdot, d_cov[direction], out=term)
            dk[direction] += term
            # dρ = dq12 / sqrt(q11 q22) − ρ (dq11/q11 + dq22/q22) / 2.
            rho_rates = np.add.outer(
                0.5 * row_rates * inverse_sqrt_rows, 0.5 * col_rates * inverse_sqrt_cols
            )
            rho_rates *= rho
            np.multiply(d_cov[direction], inverse_sqrt_rows[:, None], out=term)
            term *= inverse_sqrt_cols[None, :]
            term -= rho_rates
            np.multiply(term, c_over_sin, out=dkdot[direction])
        return dk, dkdot

    def dual_diag(self, q):
        q = np.asarray(q, dtype=float)
        return self._a * q, np.full_like(q, self._a)

    def dual_diag_jvp(self, q, dq):
        k, kdot = self.dual_diag(q)
        return k, kdot, self._a * dq, np.zeros_like(dq)


class ErfActivation(Activation):
    """σ = erf: the arcsine kernel of Williams (1997).

    With a² = 1 + 2q per point, r = 2 q12 / (a_x a_y) and D = 1 − r²:
    k = (2/π) arcsin r and kdot = (4/π) / (a_x a_y sqrt D).  Written so
    for every representable q: per point u = 1/(1 + 2q), G = 2q/(1 + 2q)
    = 1 − u; ρ is snapped as in :func:`_correlation`.  D is never
    formed as (1 + 2q11)(1 + 2q22) − 4 q12², which overflows for q ≳ 1e77
    and cancels as q grows (kdot of duplicates had a 1e-9 error at q = 1e16),
    but as a sum of non-negative terms,

        D = u_x + u_y − u_x u_y + G_x G_y (1 − ρ²) = u_y R²,
        R² = 1 + 2 q22 E,   E = G_x (1 − ρ²) + u_x,

    so that kdot = (4/π) (1/a_x) / R and, since arcsin r = arctan(r/sqrt D),
    k = (2/π) arctan((2 q12/a_x) / R): accurate also where r → 1, where
    arcsin(r) would turn the rounding of r into an error of order sqrt(eps),
    and numpy's arctan is cheaper than its arcsin.
    """

    name = "erf"

    def function(self, x):
        return erf(x)

    def derivative(self, x):
        # exp(-x²) is 0 in float64 from |x| = 27.3 on: clipping |x| at 40
        # changes nothing there and keeps x² from overflowing.
        x = np.clip(x, -40.0, 40.0)
        return (2.0 / np.sqrt(np.pi)) * np.exp(-np.square(x))

    workspace_size = 2

    #: Tiles whose variances are all at most this take the direct formulas,
    #: (4/π)/sqrt(P − 4 q12²) and (2/π) arcsin(2 q12/sqrt P) with
    #: P = (1 + 2q11)(1 + 2q22): there P − 4 q12² >= 1 + 2q11 + 2q22 loses at
    #: most (1 + 2q)²/(1 + 4q) <= 5 ulps to cancellation, 2 q12/sqrt P <= 8/9
    #: keeps arcsin well conditioned, ρ needs no snapping, and they cost 8%
    #: less than the rescaled forms, which every other tile takes.
    _MODERATE_VARIANCE = 4.0

    def prepare(self, variances, eval_gradient=False):
        # Per point, once per layer rather than once per tile:
        # (q, u = 1/(1 + 2q), G = 2q/(1 + 2q), 2q, snapped 1/sqrt q,
        #  1/a = sqrt u, a² = 1 + 2q).  q + 1/2 = (1 + 2q)/2 rather than
        # 1 + 2q: the same ratios (scaling by 2 is exact) without overflow.
        features = []
        for q in variances:
            q = np.asarray(q, dtype=float)
            half = q + 0.5
            u = 0.5 / half
            features.append((q, u, q / half, 2.0 * q, _snapped_inverse_sqrt(q),
                             np.sqrt(u), 2.0 * half))
        return features

    @staticmethod
    def _moderate_dual(rows, cols, cov, workspace, scale, in_place):
        """:meth:`dual` by the direct formulas (see _MODERATE_VARIANCE)."""
        product = np.multiply(rows[6][:, None], cols[6][None, :], out=workspace[0])
        # kdot = (4/π) / sqrt(P - 4 q12²); P - 4 q12² >= 1 + 2 q11 + 2 q22.
        kdot = np.multiply(cov, cov, out=workspace[1])
        kdot *= -4.0
        kdot += product
        np.sqrt(kdot, out=kdot)
        np.divide(4.0 / np.pi * scale, kdot, out=kdot)
        # k = (2/π) arcsin(2 q12 / sqrt(P)).
        np.sqrt(product, out=product)
        k = np.divide(cov, product, out=cov if in_place else product)
        k *= 2.0
        k.clip(-1.0, 1.0, out=k)
        np.arcsin(k, out=k)
        k *= 2.0 / np.pi * scale
        return k, kdot

    @staticmethod
    def _root(rows, cols, cov, out=None):
        """R = a_y sqrt(D) = sqrt(1 + 2 q22 E), computed into ``out``."""
        root = _correlation(cov, rows[4], cols[4], out=out)
        # E = G_x (1 - ρ²) + u_x >= u_x > 0 (|ρ| <= 1 after clipping).
        np.multiply(root, root, out=root)
        np.subtract(1.0, root, out=root)
        root *= rows[2][:, None]
        root += rows[1][:, None]
        root *= cols[3][None, :]
        root += 1.0
        return np.sqrt(root, out=root)

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        in_place = workspace is not None
        if not in_place:
            workspace = [np.empty_like(cov) for _ in range(self.workspace_size)]
        if max(np.max(rows[0], initial=0.0),
               np.max(cols[0], initial=0.0)) <= self._MODERATE_VARIANCE:
            return self._moderate_dual(rows, cols, cov, workspace, scale, in_place)
        root = self._root(rows, cols, cov, out=workspace[0])
        inverse_a_rows = rows[5][:, None]
        # k = σ_w² (2/π) arctan((2 q12/a_x) / R).
        k = np.multiply(cov, 2.0 * inverse_a_rows,
                        out=cov if in_place else np.empty_like(cov))
        k /= root
        np.arctan(k, out=k)
        k *= 2.0 / np.pi * scale
        # kdot = σ_w² (4/π) (1/a_x) / R.
        kdot = np.divide((4.0 / np.pi * scale) * inverse_a_rows, root, out=root)
        return k, kdot

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        # In (q11, q22, ρ) rather than (q11, q22, q12): at fixed ρ nothing
        # cancels, while dq12 − q12 (u_x dq11 + u_y dq22) loses eps/u of
        # relative accuracy at duplicates.  With r = ρ g_x g_y, dg = u² dq/g
        # and (2/π)/sqrt(D) = kdot a_x a_y / 2, a g = sqrt(2q):
        #   dk = kdot [s dρ + ρ s (u_x dq11/q11 + u_y dq22/q22)/2],
        # and from D = u_x + u_y − u_x u_y + G_x G_y (1 − ρ²), du = −2u² dq:
        #   dkdot = kdot [−u_x dq11 − u_y dq22
        #                 + (ρ² (u_x² G_y dq11 + u_y² G_x dq22) + G_x G_y ρ dρ)/D].
        _, kdot = self.dual(rows, cols, cov)
        if max(np.max(rows[0], initial=0.0),
               np.max(cols[0], initial=0.0)) <= self._MODERATE_VARIANCE:
            # The direct forms lose at most (1 + 2q) ulps here (1 - 2 q u = u
            # and the 1/D terms cancel to u >= 1/9) and cost half as much.
            u_rows, u_cols = rows[1][None, :, None], cols[1][None, None, :]
            weighted = d_rows[:, :, None] * u_rows + d_cols[:, None, :] * u_cols
            product = np.multiply.outer(rows[6], cols[6])
            denominator = (product - 4.0 * cov * cov) * (u_rows * u_cols)
            dk = kdot * (d_cov - cov * weighted)
            dkdot = -kdot * (weighted - 4.0 * cov * u_rows * u_cols * d_cov) / denominator
            return dk, dkdot
        rho = _correlation(cov, rows[4], cols[4])
        s, d_rho, inverse_rows, inverse_cols = _correlation_tangents(
            cov, rho, rows[0], cols[0], d_rows, d_cols, d_cov)
        denominator = self._root(rows, cols, cov)
        denominator *= denominator
        denominator *= cols[1][None, :]
        u_x, big_g_x = rows[1][:, None], rows[2][:, None]
        u_y, big_g_y = cols[1][None, :], cols[2][None, :]
        d11, d22 = d_rows[:, :, None], d_cols[:, None, :]
        rho_s = rho * s
        dk = kdot * (s * d_rho + 0.5 * rho_s * (
            u_x * inverse_rows[:, None] * d11 + u_y * inverse_cols[None, :] * d22))
        # u²/D as u (u/D): u² alone underflows where u ~ 1e-200.
        dkdot = kdot * (
            -u_x * d11 - u_y * d22
            + rho * rho * (u_x * (u_x / denominator) * big_g_y * d11
                           + u_y * (u_y / denominator) * big_g_x * d22)
            + big_g_x * big_g_y * rho * d_rho / denominator
        )
        return dk, dkdot

    def dual_diag(self, q):
        q = np.asarray(q, dtype=float)
        # k = (2/π) arcsin(2q/(1 + 2q)) = (2/π) arctan(2q/sqrt(1 + 4q)) and
        # kdot = (4/π)/sqrt(1 + 4q), written so that nothing overflows for
        # any representable q (the factors 2 and 4 are exact) and k keeps
        # full accuracy as 2q/(1 + 2q) -> 1.
        root = np.sqrt(q + 0.25)
        k = (2.0 / np.pi) * np.arctan(q / root)
        kdot = (2.0 / np.pi) / root
        return k, kdot

    def dual_diag_jvp(self, q, dq):
        q = np.asarray(q, dtype=float)
        k, kdot = self.dual_diag(q)
        # dk = kdot dq/(1 + 2q), dkdot = -2 kdot dq/(1 + 4q).
        dk = kdot * (0.5 / (q + 0.5)) * dq
        dkdot = -0.5 * kdot * dq / (q + 0.25)
        return k, kdot, dk, dkdot


class IdentityActivation(Activation):
    """σ(x) = x: every layer is linear, k = q12 and kdot = 1."""

    name = "identity"
    homogeneous = True

    def function(self, x):
        return np.asarray(x, dtype=float).copy()

    def derivative(self, x):
        return np.ones_like(np.asarray(x, dtype=float))

    workspace_size = 1

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        if workspace is None:
            return cov * scale, np.full_like(cov, scale)
        workspace[0].fill(scale)
        cov *= scale
        return cov, workspace[0]

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        return d_cov.copy(), np.zeros_like(d_cov)

    def dual_diag(self, q):
        q = np.asarray(q, dtype=float)
        return q.copy(), np.ones_like(q)

    def dual_diag_jvp(self, q, dq):
        k, kdot = self.dual_diag(q)
        return k, kdot, dq.copy(), np.zeros_like(dq)


class TrigonometricActivation(Activation):
    """σ = sin or cos.

    With m = (q11 + q22)/2: E[sin u sin v] = e^{-m} sinh q12 and
    E[cos u cos v] = e^{-m} cosh q12; the derivative pair swaps the two.
    Both are formed from exp(±q12 - m), whose exponents are <= 0
    (|q12| <= sqrt(q11 q22) <= m) and are clipped at 0, so that rounding
    cannot make exp overflow at any scale: the kernel stays bounded by 1.
    """

    def __init__(self, name):
        self.name = name
        self._sign = -1.0 if name == "sin" else 1.0

    def function(self, x):
        return np.sin(x) if self.name == "sin" else np.cos(x)

    def derivative(self, x):
        return np.cos(x) if self.name == "sin" else -np.sin(x)

    workspace_size = 3

    #: Each exponent ±q12 - m is raised by 8 eps · m before clipping at 0 (the
    #: per-point halves q/2 are lowered by that factor): within rounding of a
    #: duplicate (or antipode) it is exactly 0, as the snapping of the
    #: correlation does for the other activations; at large variances, where
    #: eps · m >~ 1, identical points would otherwise get e^(-O(eps m)).
    _SNAP = 1.0 - 8.0 * np.finfo(float).eps

    def prepare(self, variances, eval_gradient=False):
        # (q, q/2 lowered by the snap) per point, once per layer.
        variances = [np.asarray(q, dtype=float) for q in variances]
        return [(q, (0.5 * self._SNAP) * q) for q in variances]

    def _pair(self, up, down, scale=1.0, out=(None, None)):
        """(k, kdot) from up = exp(q12 - m) and down = exp(-q12 - m).

        They are the cosh- and sinh-type halves of e^{-m} e^{±q12}; ``out``
        is where k and kdot go (new arrays if None).
        """
        sine_out, cosine_out = out if self._sign < 0 else out[::-1]
        hyperbolic_sine = np.subtract(up, down, out=sine_out)
        hyperbolic_sine *= 0.5 * scale
        hyperbolic_cosine = np.add(up, down, out=cosine_out)
        hyperbolic_cosine *= 0.5 * scale
        if self._sign < 0:
            return hyperbolic_sine, hyperbolic_cosine
        return hyperbolic_cosine, hyperbolic_sine

    #: Where every variance of a tile is at least this, sinh q12 is taken as
    #: (e^{q12} - e^{-q12})/2: its absolute error eps·e^{-m} is then within
    #: 5 eps of sqrt(k(x,x) k(x',x')) >= (1 - e^{-1/2})/2.  Tiles with smaller
    #: variances use expm1 (1.7x the cost of exp), as the difference would
    #: lose all precision against a kernel of size ~q.
    _SMALL_VARIANCE = 0.25

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        in_place = workspace is not None
        if not in_place:
            workspace = [np.empty_like(cov) for _ in range(self.workspace_size)]
        if min(np.min(rows[0], initial=np.inf),
               np.min(cols[0], initial=np.inf)) < self._SMALL_VARIANCE:
            return self._small_dual(rows, cols, cov, workspace, scale, in_place)
        up = np.subtract(cov, rows[1][:, None], out=workspace[0])
        up -= cols[1][None, :]
        np.minimum(up, 0.0, out=up)
        down = np.subtract(-rows[1][:, None], cov, out=workspace[1])
        down -= cols[1][None, :]
        np.minimum(down, 0.0, out=down)
        np.exp(up, out=up)
        np.exp(down, out=down)
        return self._pair(up, down, scale, out=(cov if in_place else None, workspace[2]))

    def _small_dual(self, rows, cols, cov, workspace, scale, in_place):
        """:meth:`dual` without cancellation: with big = e^{|q12| - m} and
        e = expm1(-2|q12|), the sinh-type half is sign(q12) big (-e)/2 and
        the cosh-type half big (2 + e)/2."""
        magnitude = np.abs(cov, out=workspace[0])
        big = np.subtract(magnitude, rows[1][:, None], out=workspace[1])
        big -= cols[1][None, :]
        np.minimum(big, 0.0, out=big)
        np.exp(big, out=big)
        big *= 0.5 * scale
        small = np.multiply(magnitude, -2.0, out=magnitude)
        np.expm1(small, out=small)
        hyperbolic_sine = np.multiply(big, small, out=workspace[2])
        target = cov if in_place else np.empty_like(cov)
        if self._sign < 0:
            k = np.copysign(hyperbolic_sine, cov, out=target)
            small += 2.0
            return k, np.multiply(small, big, out=big)
        kdot = np.copysign(hyperbolic_sine, cov, out=hyperbolic_sine)
        small += 2.0
        return np.multiply(small, big, out=target), kdot

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        # With up = exp(q12 - m) and down = exp(-q12 - m) as in dual(),
        # d(up) = up (dq12 - dm) and d(down) = -down (dq12 + dm); k and kdot
        # are (up ∓ down)/2.  Where dual() snapped an exponent to 0 (a
        # duplicate or an antipode), dq12 ∓ dm is 0 too: computed, it would
        # be rounding noise of order eps·q, which at large q swamps the
        # kernel's own scale.
        up = np.subtract(cov, rows[1][:, None])
        up -= cols[1][None, :]
        down = np.subtract(-rows[1][:, None], cov)
        down -= cols[1][None, :]
        d_mean = 0.5 * (d_rows[:, :, None] + d_cols[:, None, :])
        rising = np.where(up < 0.0, d_cov - d_mean, 0.0)
        falling = np.where(down < 0.0, d_cov + d_mean, 0.0)
        rising *= 0.5 * np.exp(np.minimum(up, 0.0))
        falling *= 0.5 * np.exp(np.minimum(down, 0.0))
        if self._sign < 0:
            return rising + falling, rising - falling
        return rising - falling, rising + falling

    def dual_diag(self, q):
        q = np.asarray(q, dtype=float)
        # m = q12 = q: (1 - e^{-2q})/2 and (1 + e^{-2q})/2, the first by
        # expm1 (it is ~q for small q).
        small = np.expm1(-2.0 * q)
        hyperbolic_sine, hyperbolic_cosine = -0.5 * small, 1.0 + 0.5 * small
        if self._sign < 0:
            return hyperbolic_sine, hyperbolic_cosine
        return hyperbolic_cosine, hyperbolic_sine

    def dual_diag_jvp(self, q, dq):
        k, kdot = self.dual_diag(q)
        # d/dq of e^{-q} sinh q and e^{-q} cosh q along q11 = q22 = q12 = q
        # is ±e^{-2q}: formed directly, not as kdot - k, which would cancel
        # to rounding noise of order eps·q at large q.
        down = np.exp(-2.0 * np.asarray(q, dtype=float))
        return k, kdot, -self._sign * down * dq, self._sign * down * dq


class GeluActivation(Activation):
    """σ(x) = x Φ(x), the exact GELU (Φ the standard normal CDF).

    With q = q12, p = q11 q22, P = (1 + q11)(1 + q22), δ = sqrt(P − q²) and
    ψ = arcsin(q / sqrt P):
    k = q/4 + [(q² + p δ²)/(P δ) + q ψ] / 2π and
    kdot = 1/4 + ψ/2π + q [1/δ² + (1 − p)/P + 1] / (2π δ).

    Evaluated as written, P overflows for q ≳ 1e154 and δ² = P − q² cancels
    catastrophically from q ≈ 1e8 on.  Instead, per point, b = sqrt(1 + q),
    u = 1/(1 + q) and G = q/(1 + q) = 1 − u; per entry, ρ snapped as in
    :func:`_correlation`, t = q12/b_x and δ² = P u_y S² with

        S² = 1 + q22 E,   E = G_x (1 − ρ²) + u_x,

    a sum of non-negative terms.  Then ψ = arctan(t/S) (accurate also where
    q/sqrt P → 1, unlike arcsin), and since (1 − p)/P + 1 = u_x + u_y,

        k    = q (1/4 + ψ/2π) + [t (t/S) u_y / b_x + (q11/b_x) G_y S] / 2π,
        kdot = 1/4 + ψ/2π + (t/S) [u_x (1 + 1/S²) + u_y] / 2π.

    Every term is bounded by a multiple of sqrt(q11 q22) (k) or of 1 (kdot),
    and as q → ∞ (u → 0, G → 1, S → sqrt(q22 (1 − ρ²))) they tend to
    relu's arc-cosine kernels q/4 + (s sqrt(1 − ρ²) + q arcsin ρ)/2π and
    1/4 + arcsin(ρ)/2π.

    The tangents use Price's theorem, dk = ∂k/∂q11 dq11 + ∂k/∂q22 dq22 +
    kdot dq12, with the partial derivatives ∂k/∂q11 = E[σ''(u)σ(v)]/2,
    ∂kdot/∂q11 = E[σ'''(u)σ'(v)]/2 and ∂kdot/∂q12 = E[σ''(u)σ''(v)] in
    closed form (σ'' = φ (2 − x²), σ''' = φ (x³ − 4x)): multiplying the
    Gaussian density by φ(u) (or φ(u)φ(v)) gives another Gaussian, under
    which the remaining moments follow from Stein's lemma.  See
    :meth:`_partials`.
    """

    name = "gelu"

    def function(self, x):
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))

    def derivative(self, x):
        # exp(-x²/2) is 0 in float64 from |x| = 38.6 on: clipping x at 40 in
        # the exponent changes nothing and keeps x² from overflowing.
        clipped = np.clip(x, -40.0, 40.0)
        return 0.5 * (1.0 + erf(x / np.sqrt(2.0))) + x * np.exp(
            -0.5 * clipped * clipped
        ) / np.sqrt(_TWO_PI)

    workspace_size = 4
    #: Where all variances are at most this, the tangents take the cheaper
    #: partials at fixed q12 (their cancellation near ρ = 1 costs eps/u).
    _MODERATE_VARIANCE = 4.0
    #: Its six tile-sized buffers are 0.8 MB each at 320 rows; at 128 rows
    #: they stay in cache: 28 instead of 34 ns per entry (one thread).
    tile_size = 128

    def prepare(self, variances, eval_gradient=False):
        # Per point, once per layer: (q, u, G, b, snapped 1/sqrt q, q/b).
        # Nothing here overflows for any representable q.
        features = []
        for q in variances:
            q = np.asarray(q, dtype=float)
            w = 1.0 + q
            b = np.sqrt(w)
            features.append((q, 1.0 / w, q / w, b, _snapped_inverse_sqrt(q), q / b))
        return features

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        in_place = workspace is not None
        if not in_place:
            workspace = [np.empty_like(cov) for _ in range(self.workspace_size)]
        u_x, big_g_x, b_x = (part[:, None] for part in rows[1:4])
        u_y, big_g_y = cols[1][None, :], cols[2][None, :]
        factor = scale / _TWO_PI
        # S² = 1 + q22 (G_x (1 - ρ²) + u_x), ρ clipped to ±1.
        s = _correlation(cov, rows[4], cols[4], out=workspace[0])
        np.multiply(s, s, out=s)
        np.subtract(1.0, s, out=s)
        s *= big_g_x
        s += u_x
        s *= cols[0][None, :]
        s += 1.0
        bracket = np.divide(1.0, s, out=workspace[1])
        np.sqrt(s, out=s)
        t = np.multiply(cov, 1.0 / b_x, out=workspace[2])
        ratio = np.divide(t, s, out=workspace[3])
        # σ_w² (t/S) [u_x (1 + 1/S²) + u_y] / 2π, the last term of kdot.
        bracket += 1.0
        bracket *= u_x * factor
        bracket += u_y * factor
        bracket *= ratio
        # σ_w² [t (t/S) u_y / b_x + (q11/b_x) G_y S] / 2π, the last of k.
        t *= ratio
        t *= factor / b_x
        t *= u_y
        s *= factor * rows[5][:, None]
        s *= big_g_y
        t += s
        # σ_w² (1/4 + ψ/2π), ψ = arctan(t/S), is kdot's first term; q12
        # times it is k's.
        kdot0 = np.arctan(ratio, out=s)
        kdot0 *= factor
        kdot0 += 0.25 * scale
        k = np.multiply(cov, kdot0, out=cov if in_place else workspace[3])
        k += t
        kdot = np.add(bracket, kdot0, out=bracket)
        return k, kdot

    @staticmethod
    def _partials(q11, q22, q12, rho, x, y):
        """(∂k/∂q11, ∂k/∂q22, ∂kdot/∂q11, ∂kdot/∂q22, ∂kdot/∂q12), unscaled.

        ``x`` and ``y`` are the per-point features (u, G, b) broadcast
        against q12; ``rho`` is the clipped correlation.  With
        ω = 1 − ρ² and Δ = δ²/P = u_x + u_y − u_x u_y + G_x G_y ω:

        * weighting by φ(u) leaves (u, v) Gaussian with variances
          (G_x, d_x = q22 (ω + ρ² u_x)) and covariance c_x = q12 u_x, and
          (1 + q11)(1 + d_x) = δ²;
        * weighting by φ(u)φ(v) leaves variances a'' = G_x (u_y + G_y ω)/Δ,
          d'' = G_y (u_x + G_x ω)/Δ and covariance c'' = q12 u_x u_y / Δ,
          with normaliser 1/(2π δ).

        Then, all terms bounded and the first sum free of cancellation,
        ∂k/∂q11 = [q22 (G_x ω + 2 u_x (ω + ρ² u_x)) − c_x²/(1 + d_x)] / (4π δ),
        ∂kdot/∂q11 = [c_x (3 G_x − 4 − c_x²/(1 + d_x)) + c'' (3 a'' − 4)] / (4π δ),
        ∂kdot/∂q12 = [(2 − a'')(2 − d'') + 2 c''²] / (2π δ).
        """
        u_x, big_g_x, b_x = x
        u_y, big_g_y, b_y = y
        omega = (1.0 - rho) * (1.0 + rho)
        rho2 = rho * rho
        delta_ratio = u_x + u_y - u_x * u_y + big_g_x * big_g_y * omega
        delta = b_x * b_y * np.sqrt(delta_ratio)
        partials = []
        for (q_other, u_a, big_g_a), (u_b, big_g_b) in (
            ((q22, u_x, big_g_x), (u_y, big_g_y)), ((q11, u_y, big_g_y), (u_x, big_g_x))
        ):
            # c² = ρ² q_other G_a u_a (= q12² u_a², without forming q12²).
            d = q_other * (omega + rho2 * u_a)
            c = q12 * u_a
            c2_ratio = rho2 * q_other * big_g_a * u_a / (1.0 + d)
            partials.append((
                q_other * (big_g_a * omega + 2.0 * u_a * (omega + rho2 * u_a))
                - c2_ratio,
                c * (3.0 * big_g_a - 4.0 - c2_ratio),
                big_g_a * (u_b + big_g_b * omega) / delta_ratio,
            ))
        c_pp = q12 * u_x * u_y / delta_ratio
        (k_x, kd_x, a_pp), (k_y, kd_y, d_pp) = partials
        inverse = 1.0 / (4.0 * np.pi * delta)
        return (
            k_x * inverse,
            k_y * inverse,
            (kd_x + c_pp * (3.0 * a_pp - 4.0)) * inverse,
            (kd_y + c_pp * (3.0 * d_pp - 4.0)) * inverse,
            ((2.0 - a_pp) * (2.0 - d_pp) + 2.0 * c_pp * c_pp) * (2.0 * inverse),
        )

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        _, kdot = self.dual(rows, cols, cov)
        rho = _correlation(cov, rows[4], cols[4])
        q11, q22 = rows[0][:, None], cols[0][None, :]
        x = tuple(rows[i][:, None] for i in (1, 2, 3))
        y = tuple(cols[i][None, :] for i in (1, 2, 3))
        k_x, k_y, kd_x, kd_y, kd_xy = self._partials(q11, q22, cov, rho, x, y)
        d11, d22 = d_rows[:, :, None], d_cols[:, None, :]
        dk = k_x * d11 + k_y * d22 + kdot * d_cov
        if max(np.max(rows[0], initial=0.0),
               np.max(cols[0], initial=0.0)) <= self._MODERATE_VARIANCE:
            # The cancellation below costs at most eps/u <= 5 eps here.
            return dk, kd_x * d11 + kd_y * d22 + kd_xy * d_cov
        # kdot's partials in q11 and q22 at fixed q12 nearly cancel with
        # ∂kdot/∂q12 · ∂q12/∂q11 near ρ = 1 (from O(u^1/2) to O(u^3/2) at
        # duplicates): kdot is differentiated at fixed ρ instead (see
        # _fixed_correlation_slopes), plus ∂kdot/∂ρ = s ∂kdot/∂q12 dρ.
        s, d_rho, inverse_rows, inverse_cols = _correlation_tangents(
            cov, rho, rows[0], cols[0], d_rows, d_cols, d_cov)
        slope_x, slope_y = self._fixed_correlation_slopes(
            rho, x, y, inverse_rows[:, None], inverse_cols[None, :])
        dkdot = slope_x * d11 + slope_y * d22 + (kd_xy * s) * d_rho
        return dk, dkdot

    @staticmethod
    def _fixed_correlation_slopes(rho, x, y, inverse_x, inverse_y):
        """(∂kdot/∂q11, ∂kdot/∂q22) at fixed ρ.

        With r = ρ g_x g_y, D = 1 − r² (formed as in dual()),
        H = u_x (1 + u_y/D) + u_y and kdot = 1/4 + [arcsin r + (r/√D) H]/2π;
        at fixed ρ and q22, dr = r u_x dq11/(2 q11), dD = −r² u_x dq11/q11
        and du_x = −u_x² dq11, so that
        2π ∂kdot/∂q11 = (r u_x/√D) [((1 + H)/2 + r² H/(2D)
                                     + r² (u_x/D)(u_y/D))/q11 − u_x (1 + u_y/D)],
        terms of one order that do not cancel.
        """
        (u_x, big_g_x, _), (u_y, big_g_y, _) = x, y
        omega = (1.0 - rho) * (1.0 + rho)
        big_d = u_x + u_y - u_x * u_y + big_g_x * big_g_y * omega
        r = rho * np.sqrt(big_g_x * big_g_y)
        root = np.sqrt(big_d)
        ratio_x, ratio_y = u_x / big_d, u_y / big_d
        h = u_x * (1.0 + ratio_y) + u_y
        common = (0.5 * (1.0 + h) + 0.5 * r * r * h / big_d
                  + r * r * ratio_x * ratio_y)
        factor = r / (_TWO_PI * root)
        slope_x = factor * u_x * (common * inverse_x - u_x * (1.0 + ratio_y))
        slope_y = factor * u_y * (common * inverse_y - u_y * (1.0 + ratio_x))
        return slope_x, slope_y

    def _diag_features(self, q):
        q = np.asarray(q, dtype=float)
        w = 1.0 + q
        return q, 1.0 / w, q / w, np.sqrt(w)

    def dual_diag(self, q):
        # The tile formulas at q11 = q22 = q12 = q, ρ = 1: h = g, r = G,
        # E = u and S² = 1 + q u = 1 + G.
        q, u, big_g, b = self._diag_features(q)
        s2 = 1.0 + big_g
        s = np.sqrt(s2)
        t = q / b
        ratio = t / s
        kdot0 = 0.25 + np.arctan(ratio) / _TWO_PI
        k = q * kdot0 + (t * ratio * u / b + t * big_g * s) / _TWO_PI
        kdot = kdot0 + ratio * (u * (1.0 + 1.0 / s2) + u) / _TWO_PI
        return k, kdot

    def dual_diag_jvp(self, q, dq):
        k, kdot = self.dual_diag(q)
        q, u, big_g, b = self._diag_features(q)
        k_x, k_y, _, _, _ = self._partials(
            q, q, q, np.ones_like(q), (u, big_g, b), (u, big_g, b)
        )
        # dkdot/dq along q11 = q22 = q12 = q: the three partials cancel to
        # O(q^-3/2) from O(q^-1/2) terms, so it is differentiated directly:
        # with kdot = 1/4 + arcsin(1 - u)/2π + (1 - u)(5 - 2u) sqrt(u)
        # (2 - u)^(-3/2)/2π and du/dq = -u²,
        # dkdot/dq = -u^(3/2) (1 - 12u + 9u² - 2u³) / (2π (2 - u)^(5/2)).
        polynomial = 1.0 + u * (-12.0 + u * (9.0 - 2.0 * u))
        slope = -u * np.sqrt(u) * polynomial / (_TWO_PI * (2.0 - u) ** 2.5)
        return k, kdot, (k_x + k_y + kdot) * dq, slope * dq


# --------------------------------------------------------------------------
# Numerical path: a Hermite (Mehler) series with an exact bound on its
# truncation error, and pair-by-pair quadrature where the series is slow.
# --------------------------------------------------------------------------

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
#: (32 MB) in all, where that is cheaper than the pairs' nested rules: the
#: estimates are _PAIR_SECONDS per pair and _TERM_SECONDS per multiply-add
#: (measured on an AVX2 AMD EPYC).
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
    whose cost (~1 ms a pair) does not depend on the variance.  A tile with
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
        """Per point: (q, value coefficients, snapped 1/sqrt q, hot threshold,
        layer, index in the layer) and, with eval_gradient, (gradient
        coefficients, threshold, layer).

        The values take the same series with and without eval_gradient, so
        that K is the same bit for bit.
        """
        variances = [np.asarray(q, dtype=float) for q in variances]
        q = np.concatenate(variances) if variances else np.empty(0)
        scales = np.sqrt(q)
        n_levels = feature_levels(scales)
        parts = [q, *self._layer(scales, (_VALUE, _SLOPE), _VALUE_PAIRS, n_levels)]
        parts[2:2] = [_snapped_inverse_sqrt(q)]
        parts.append(np.arange(q.size))
        if eval_gradient:
            pairs = self._gradient_pairs()
            families = tuple(sorted({f for pair in pairs for f in pair}))
            parts += self._layer(scales, families, pairs, n_levels)
        boundaries = np.cumsum([v.size for v in variances])[:-1]
        pieces = (np.split(part, boundaries) for part in parts)
        return [tuple(point_set) for point_set in zip(*pieces)]

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
        1 at large variance; the nested rules would cost ~1 ms per pair.  The
        tile is then summed again with the shortest series (a power of 2) whose
        bound |ρ|^K <= tol covers all but 1/64 of those pairs, if that costs
        less: K·n_series multiply-adds per entry of the tile, 1.2 ns each
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

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        in_place = workspace is not None
        if not in_place:
            workspace = [np.empty_like(cov) for _ in range(self.workspace_size)]
        q_rows, c_rows, inverse_rows, threshold_rows, layer, id_rows = rows[:6]
        q_cols, c_cols, inverse_cols, threshold_cols, _, id_cols = cols[:6]
        layer = layer[0]
        rho = _correlation(cov, inverse_rows, inverse_cols, out=workspace[0])
        rho2 = np.multiply(rho, rho, out=workspace[3])
        # Coefficients degree by degree, contiguous per degree for BLAS.
        left, right = _by_degree(c_rows), _by_degree(c_cols)
        plans = layer.plans
        # cov is no longer needed once rho is formed: with a workspace, k goes there.
        k_out, kdot_out = (cov if in_place else None), workspace[1]
        for attempt in range(2):
            kdot = mehler(rho, rho2, left[1], right[1], plans[_SLOPE, _SLOPE],
                          kdot_out, workspace[2])
            k = mehler(rho, rho2, left[0], right[0], plans[_VALUE, _VALUE], k_out,
                       workspace[2])
            k_out, kdot_out = k, kdot
            hot = self._hot(rho, threshold_rows, threshold_cols, workspace[2])
            longer = (None if hot is None or attempt
                      else self._longer(layer, rho, hot, 1))
            if longer is None:
                break
            by_degree, thresholds, plans = longer
            left, right = by_degree[:, :, id_rows], by_degree[:, :, id_cols]
            threshold_rows, threshold_cols = thresholds[id_rows], thresholds[id_cols]
        if hot is not None:
            i, j = hot
            k[i, j], kdot[i, j] = self._pairs(q_rows[i], q_cols[j], rho[i, j],
                                              _VALUE_PAIRS)
        if scale != 1.0:
            k *= scale
            kdot *= scale
        return k, kdot

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        q_rows, inverse_rows, id_rows = rows[0], rows[2], rows[5]
        g_rows, threshold_rows, layer = rows[6], rows[7], rows[8][0]
        q_cols, inverse_cols, id_cols = cols[0], cols[2], cols[5]
        g_cols, threshold_cols = cols[6], cols[7]
        rho = _correlation(cov, inverse_rows, inverse_cols)
        rho2 = rho * rho
        left, right = _by_degree(g_rows), _by_degree(g_cols)
        plans = layer.plans
        for attempt in range(2):
            series = {
                pair: mehler(rho, rho2, left[layer.index(pair[0])],
                             right[layer.index(pair[1])], plan)
                for pair, plan in plans.items()
            }
            hot = self._hot(rho, threshold_rows, threshold_cols, np.empty_like(rho))
            longer = (None if hot is None or attempt
                      else self._longer(layer, rho, hot, len(plans) / 2))
            if longer is None:
                break
            by_degree, thresholds, plans = longer
            left, right = by_degree[:, :, id_rows], by_degree[:, :, id_cols]
            threshold_rows, threshold_cols = thresholds[id_rows], thresholds[id_cols]
        if hot is not None:
            i, j = hot
            pairs = list(plans)
            values = self._pairs(q_rows[i], q_cols[j], rho[i, j], pairs)
            for pair, value in zip(pairs, values):
                series[pair][i, j] = value
        return self._stein_tangents(series, q_rows, q_cols, cov, rho, d_rows, d_cols,
                                    d_cov)

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
    def dual_diag(self, q):
        q = np.asarray(q, dtype=float)
        values = self._expectations(
            lambda u: self._evaluate(u, (_VALUE, _SLOPE)) ** 2, np.sqrt(q)
        )
        return values[0], values[1]

    def dual_diag_jvp(self, q, dq):
        q = np.asarray(q, dtype=float)

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


_tanh_derivatives = _family(_tanh_family)
_sigmoid_derivatives = _family(_sigmoid_family)
_softplus_derivatives = _family(_softplus_family)


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

    def __eq__(self, other):
        return (isinstance(other, _CallableDerivatives)
                and other.function is self.function)

    def __hash__(self):
        return hash(self.function)


_REGISTRY = {
    "relu": PiecewiseLinearActivation("relu", 0.0, 1.0),
    "leaky_relu": PiecewiseLinearActivation("leaky_relu", 0.01, 1.0),
    "abs": PiecewiseLinearActivation("abs", -1.0, 1.0),
    "erf": ErfActivation(),
    "identity": IdentityActivation(),
    "gelu": GeluActivation(),
    "sin": TrigonometricActivation("sin"),
    "cos": TrigonometricActivation("cos"),
    "tanh": QuadratureActivation("tanh", _tanh_derivatives),
    "sigmoid": QuadratureActivation("sigmoid", _sigmoid_derivatives),
    "softplus": QuadratureActivation("softplus", _softplus_derivatives),
}

#: Names accepted by the ``activation`` parameter.
ACTIVATIONS = tuple(_REGISTRY)


def get_activation(activation):
    """Resolve an ``activation`` parameter to an :class:`Activation`.

    Parameters
    ----------
    activation : str or callable
        A name from ``ACTIVATIONS`` or a vectorised callable σ mapping an
        ndarray elementwise to an ndarray of the same shape.

    Returns
    -------
    activation : Activation
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return _REGISTRY[activation]
        except KeyError:
            raise ValueError(
                f"Unknown activation {activation!r}; expected one of "
                f"{sorted(_REGISTRY)} or a callable."
            ) from None
    if callable(activation):
        probe = np.linspace(-3.0, 3.0, 7)
        try:
            # Non-finite values are reported below, as an error naming the
            # callable, rather than as the user's RuntimeWarnings.
            with np.errstate(all="ignore"):
                values = np.asarray(activation(probe), dtype=float)
        except Exception as error:  # report any failure of the user's function
            raise TypeError(
                f"The activation callable {activation!r} failed on an ndarray: {error}"
            ) from error
        if values.shape != probe.shape or not np.all(np.isfinite(values)):
            raise ValueError(
                f"The activation callable {activation!r} must map an ndarray "
                "elementwise to finite values of the same shape."
            )
        name = getattr(activation, "__name__", repr(activation))
        return QuadratureActivation(name, _CallableDerivatives(activation))
    raise TypeError(
        "activation must be a string or a callable, got "
        f"{type(activation).__name__}: {activation!r}."
    )

