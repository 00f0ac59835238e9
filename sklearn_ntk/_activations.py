"""The activations with a closed-form dual, and the registry of all activations.

This module owns the closed forms (relu, leaky_relu, abs, erf, identity,
gelu, sin, cos), the registry ``_REGISTRY`` that maps every name the
``activation`` parameter accepts to its :class:`Activation`, the tuple
``ACTIVATIONS`` of those names (documentation lists are generated from it)
and :func:`get_activation`, which resolves a name or a callable.  The
contract every activation implements is in
:mod:`sklearn_ntk._activation_interface`; activations without a closed form
(tanh, sigmoid, softplus, callables) are in
:mod:`sklearn_ntk._numerical_activations`.  The recursion in
:mod:`sklearn_ntk._recursion` never looks at which activation it handles.

A new activation is a subclass of :class:`Activation` and one entry of
``_REGISTRY`` (see "Adding an activation" in the user guide).
"""

import textwrap
from typing import NamedTuple

import numpy as np
from scipy.special import erf

from ._activation_interface import (
    _TWO_PI,
    Activation,
    correlation,
    correlation_tangents,
    inverse_sqrt,
    snapped_inverse_sqrt,
)
from ._numerical_activations import NUMERICAL_ACTIVATIONS, callable_activation


class PiecewiseLinearFeatures(NamedTuple):
    """Per-point features of :class:`PiecewiseLinearActivation`."""

    variance: np.ndarray
    root: np.ndarray  # sqrt(q)
    inverse_root: np.ndarray  # snapped 1/sqrt(q)


class PiecewiseLinearActivation(Activation):
    """σ(x) = a·min(x, 0) + b·max(x, 0): relu, leaky_relu and abs.

    With C = (a − b)²/2π, A = (a² + b²)/2 and θ = arccos ρ:
    k = C·s·sin θ + (A − C θ) q12 and kdot = A − C θ (arc-cosine kernels).
    """

    homogeneous = True
    piecewise_linear = True
    workspace_size = 3

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

    def _point_features(self, q):
        # (q, sqrt q, snapped 1/sqrt q) per point, once per layer: per-point
        # work in a tile holds the GIL between its array passes.
        return PiecewiseLinearFeatures(q, np.sqrt(q), snapped_inverse_sqrt(q))

    def _dual(self, rows, cols, cov, scale, workspace):
        rho_buffer, theta_buffer, sine_buffer = workspace
        rho = correlation(cov, rows.inverse_root, cols.inverse_root, out=rho_buffer)
        theta = np.arccos(rho, out=theta_buffer)
        # sin(arccos rho) = sqrt(1 - rho²): a square root instead of a sin.
        # Near rho = ±1 its rounding error (vs sqrt((1 - rho)(1 + rho))) is
        # far below the effect of the rounding and snapping of rho itself.
        sin_theta = np.multiply(rho, rho, out=sine_buffer)
        np.subtract(1.0, sin_theta, out=sin_theta)
        np.sqrt(sin_theta, out=sin_theta)
        sin_theta *= (rows.root * (self._c * scale))[:, None]
        sin_theta *= cols.root
        kdot = theta
        kdot *= -self._c * scale
        kdot += self._a * scale
        k = np.multiply(kdot, cov, out=cov)
        k += sin_theta
        return k, kdot

    def _dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        k, kdot = self.dual(rows, cols, cov)
        rho = correlation(cov, rows.inverse_root, cols.inverse_root)
        sqrt_rows, inverse_sqrt_rows = inverse_sqrt(rows.variance)
        sqrt_cols, inverse_sqrt_cols = inverse_sqrt(cols.variance)
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

    def _dual_diag(self, q):
        return self._a * q, np.full_like(q, self._a)

    def _dual_diag_tangents(self, q, dq):
        k, kdot = self._dual_diag(q)
        return k, kdot, self._a * dq, np.zeros_like(dq)


class ErfFeatures(NamedTuple):
    """Per-point features of :class:`ErfActivation` (a² = 1 + 2q)."""

    variance: np.ndarray
    u: np.ndarray  # 1/(1 + 2q)
    big_g: np.ndarray  # G = 2q/(1 + 2q) = 1 - u
    twice_variance: np.ndarray  # 2q
    inverse_root: np.ndarray  # snapped 1/sqrt(q)
    inverse_a: np.ndarray  # 1/a = sqrt(u)
    a_squared: np.ndarray  # 1 + 2q


class ErfActivation(Activation):
    """σ = erf: the arcsine kernel of Williams (1997).

    With a² = 1 + 2q per point, r = 2 q12 / (a_x a_y) and D = 1 − r²:
    k = (2/π) arcsin r and kdot = (4/π) / (a_x a_y sqrt D).  Written so
    for every representable q: per point u = 1/(1 + 2q), G = 2q/(1 + 2q)
    = 1 − u; ρ is snapped as in :func:`correlation`.  D is never
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

    def _point_features(self, q):
        # Per point, once per layer rather than once per tile.
        # q + 1/2 = (1 + 2q)/2 rather than 1 + 2q: the same ratios (scaling
        # by 2 is exact) without overflow.
        half = q + 0.5
        u = 0.5 / half
        return ErfFeatures(q, u, q / half, 2.0 * q, snapped_inverse_sqrt(q), np.sqrt(u),
                           2.0 * half)

    @staticmethod
    def _moderate_dual(rows, cols, cov, workspace, scale):
        """:meth:`_dual` by the direct formulas (see _MODERATE_VARIANCE)."""
        product_buffer, kdot_buffer = workspace
        product = np.multiply(rows.a_squared[:, None], cols.a_squared[None, :],
                              out=product_buffer)
        # kdot = (4/π) / sqrt(P - 4 q12²); P - 4 q12² >= 1 + 2 q11 + 2 q22.
        kdot = np.multiply(cov, cov, out=kdot_buffer)
        kdot *= -4.0
        kdot += product
        np.sqrt(kdot, out=kdot)
        np.divide(4.0 / np.pi * scale, kdot, out=kdot)
        # k = (2/π) arcsin(2 q12 / sqrt(P)).
        np.sqrt(product, out=product)
        k = np.divide(cov, product, out=cov)
        k *= 2.0
        k.clip(-1.0, 1.0, out=k)
        np.arcsin(k, out=k)
        k *= 2.0 / np.pi * scale
        return k, kdot

    @staticmethod
    def _root(rows, cols, cov, out=None):
        """R = a_y sqrt(D) = sqrt(1 + 2 q22 E), computed into ``out``."""
        root = correlation(cov, rows.inverse_root, cols.inverse_root, out=out)
        # E = G_x (1 - ρ²) + u_x >= u_x > 0 (|ρ| <= 1 after clipping).
        np.multiply(root, root, out=root)
        np.subtract(1.0, root, out=root)
        root *= rows.big_g[:, None]
        root += rows.u[:, None]
        root *= cols.twice_variance[None, :]
        root += 1.0
        return np.sqrt(root, out=root)

    def _dual(self, rows, cols, cov, scale, workspace):
        if max(np.max(rows.variance, initial=0.0),
               np.max(cols.variance, initial=0.0)) <= self._MODERATE_VARIANCE:
            return self._moderate_dual(rows, cols, cov, workspace, scale)
        root_buffer, _ = workspace
        root = self._root(rows, cols, cov, out=root_buffer)
        inverse_a_rows = rows.inverse_a[:, None]
        # k = σ_w² (2/π) arctan((2 q12/a_x) / R).
        k = np.multiply(cov, 2.0 * inverse_a_rows, out=cov)
        k /= root
        np.arctan(k, out=k)
        k *= 2.0 / np.pi * scale
        # kdot = σ_w² (4/π) (1/a_x) / R.
        kdot = np.divide((4.0 / np.pi * scale) * inverse_a_rows, root, out=root)
        return k, kdot

    def _dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        # In (q11, q22, ρ) rather than (q11, q22, q12): at fixed ρ nothing
        # cancels, while dq12 − q12 (u_x dq11 + u_y dq22) loses eps/u of
        # relative accuracy at duplicates.  With r = ρ g_x g_y, dg = u² dq/g
        # and (2/π)/sqrt(D) = kdot a_x a_y / 2, a g = sqrt(2q):
        #   dk = kdot [s dρ + ρ s (u_x dq11/q11 + u_y dq22/q22)/2],
        # and from D = u_x + u_y − u_x u_y + G_x G_y (1 − ρ²), du = −2u² dq:
        #   dkdot = kdot [−u_x dq11 − u_y dq22
        #                 + (ρ² (u_x² G_y dq11 + u_y² G_x dq22) + G_x G_y ρ dρ)/D].
        _, kdot = self.dual(rows, cols, cov)
        if max(np.max(rows.variance, initial=0.0),
               np.max(cols.variance, initial=0.0)) <= self._MODERATE_VARIANCE:
            # The direct forms lose at most (1 + 2q) ulps here (1 - 2 q u = u
            # and the 1/D terms cancel to u >= 1/9) and cost half as much.
            u_rows, u_cols = rows.u[None, :, None], cols.u[None, None, :]
            weighted = d_rows[:, :, None] * u_rows + d_cols[:, None, :] * u_cols
            product = np.multiply.outer(rows.a_squared, cols.a_squared)
            denominator = (product - 4.0 * cov * cov) * (u_rows * u_cols)
            dk = kdot * (d_cov - cov * weighted)
            dkdot = -kdot * (weighted - 4.0 * cov * u_rows * u_cols * d_cov) / denominator
            return dk, dkdot
        rho = correlation(cov, rows.inverse_root, cols.inverse_root)
        s, d_rho, inverse_rows, inverse_cols = correlation_tangents(
            cov, rho, rows.variance, cols.variance, d_rows, d_cols, d_cov)
        denominator = self._root(rows, cols, cov)
        denominator *= denominator
        denominator *= cols.u[None, :]
        u_x, big_g_x = rows.u[:, None], rows.big_g[:, None]
        u_y, big_g_y = cols.u[None, :], cols.big_g[None, :]
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

    def _dual_diag(self, q):
        # k = (2/π) arcsin(2q/(1 + 2q)) = (2/π) arctan(2q/sqrt(1 + 4q)) and
        # kdot = (4/π)/sqrt(1 + 4q), written so that nothing overflows for
        # any representable q (the factors 2 and 4 are exact) and k keeps
        # full accuracy as 2q/(1 + 2q) -> 1.
        root = np.sqrt(q + 0.25)
        k = (2.0 / np.pi) * np.arctan(q / root)
        kdot = (2.0 / np.pi) / root
        return k, kdot

    def _dual_diag_tangents(self, q, dq):
        k, kdot = self._dual_diag(q)
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

    def _dual(self, rows, cols, cov, scale, workspace):
        (slope,) = workspace
        slope.fill(scale)
        cov *= scale
        return cov, slope

    def _dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        return d_cov.copy(), np.zeros_like(d_cov)

    def _dual_diag(self, q):
        return q.copy(), np.ones_like(q)

    def _dual_diag_tangents(self, q, dq):
        k, kdot = self._dual_diag(q)
        return k, kdot, dq.copy(), np.zeros_like(dq)


class TrigonometricFeatures(NamedTuple):
    """Per-point features of :class:`TrigonometricActivation`."""

    variance: np.ndarray
    half_variance: np.ndarray  # q/2, lowered by the snap (see _SNAP)


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

    def _point_features(self, q):
        # Once per layer rather than once per tile.
        return TrigonometricFeatures(q, (0.5 * self._SNAP) * q)

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
    #: variances use expm1 (dearer than exp), as the difference would
    #: lose all precision against a kernel of size ~q.
    _SMALL_VARIANCE = 0.25

    def _dual(self, rows, cols, cov, scale, workspace):
        if min(np.min(rows.variance, initial=np.inf),
               np.min(cols.variance, initial=np.inf)) < self._SMALL_VARIANCE:
            return self._small_dual(rows, cols, cov, workspace, scale)
        up_buffer, down_buffer, kdot_buffer = workspace
        up = np.subtract(cov, rows.half_variance[:, None], out=up_buffer)
        up -= cols.half_variance[None, :]
        np.minimum(up, 0.0, out=up)
        down = np.subtract(-rows.half_variance[:, None], cov, out=down_buffer)
        down -= cols.half_variance[None, :]
        np.minimum(down, 0.0, out=down)
        np.exp(up, out=up)
        np.exp(down, out=down)
        return self._pair(up, down, scale, out=(cov, kdot_buffer))

    def _small_dual(self, rows, cols, cov, workspace, scale):
        """:meth:`dual` without cancellation: with big = e^{|q12| - m} and
        e = expm1(-2|q12|), the sinh-type half is sign(q12) big (-e)/2 and
        the cosh-type half big (2 + e)/2."""
        magnitude_buffer, big_buffer, sine_buffer = workspace
        magnitude = np.abs(cov, out=magnitude_buffer)
        big = np.subtract(magnitude, rows.half_variance[:, None], out=big_buffer)
        big -= cols.half_variance[None, :]
        np.minimum(big, 0.0, out=big)
        np.exp(big, out=big)
        big *= 0.5 * scale
        small = np.multiply(magnitude, -2.0, out=magnitude)
        np.expm1(small, out=small)
        hyperbolic_sine = np.multiply(big, small, out=sine_buffer)
        if self._sign < 0:
            k = np.copysign(hyperbolic_sine, cov, out=cov)
            small += 2.0
            return k, np.multiply(small, big, out=big)
        kdot = np.copysign(hyperbolic_sine, cov, out=hyperbolic_sine)
        small += 2.0
        return np.multiply(small, big, out=cov), kdot

    def _dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        # With up = exp(q12 - m) and down = exp(-q12 - m) as in _dual(),
        # d(up) = up (dq12 - dm) and d(down) = -down (dq12 + dm); k and kdot
        # are (up ∓ down)/2.  Where dual() snapped an exponent to 0 (a
        # duplicate or an antipode), dq12 ∓ dm is 0 too: computed, it would
        # be rounding noise of order eps·q, which at large q swamps the
        # kernel's own scale.
        up = np.subtract(cov, rows.half_variance[:, None])
        up -= cols.half_variance[None, :]
        down = np.subtract(-rows.half_variance[:, None], cov)
        down -= cols.half_variance[None, :]
        d_mean = 0.5 * (d_rows[:, :, None] + d_cols[:, None, :])
        rising = np.where(up < 0.0, d_cov - d_mean, 0.0)
        falling = np.where(down < 0.0, d_cov + d_mean, 0.0)
        rising *= 0.5 * np.exp(np.minimum(up, 0.0))
        falling *= 0.5 * np.exp(np.minimum(down, 0.0))
        if self._sign < 0:
            return rising + falling, rising - falling
        return rising - falling, rising + falling

    def _dual_diag(self, q):
        # m = q12 = q: (1 - e^{-2q})/2 and (1 + e^{-2q})/2, the first by
        # expm1 (it is ~q for small q).
        small = np.expm1(-2.0 * q)
        hyperbolic_sine, hyperbolic_cosine = -0.5 * small, 1.0 + 0.5 * small
        if self._sign < 0:
            return hyperbolic_sine, hyperbolic_cosine
        return hyperbolic_cosine, hyperbolic_sine

    def _dual_diag_tangents(self, q, dq):
        k, kdot = self._dual_diag(q)
        # d/dq of e^{-q} sinh q and e^{-q} cosh q along q11 = q22 = q12 = q
        # is ±e^{-2q}: formed directly, not as kdot - k, which would cancel
        # to rounding noise of order eps·q at large q.
        down = np.exp(-2.0 * q)
        return k, kdot, -self._sign * down * dq, self._sign * down * dq


class GeluFeatures(NamedTuple):
    """Per-point features of :class:`GeluActivation` (b = sqrt(1 + q))."""

    variance: np.ndarray
    u: np.ndarray  # 1/(1 + q)
    big_g: np.ndarray  # G = q/(1 + q) = 1 - u
    b: np.ndarray
    inverse_root: np.ndarray  # snapped 1/sqrt(q)
    variance_over_b: np.ndarray  # q/b


class GeluActivation(Activation):
    """σ(x) = x Φ(x), the exact GELU (Φ the standard normal CDF).

    With q = q12, p = q11 q22, P = (1 + q11)(1 + q22), δ = sqrt(P − q²) and
    ψ = arcsin(q / sqrt P):
    k = q/4 + [(q² + p δ²)/(P δ) + q ψ] / 2π and
    kdot = 1/4 + ψ/2π + q [1/δ² + (1 − p)/P + 1] / (2π δ).

    Evaluated as written, P overflows for q ≳ 1e154 and δ² = P − q² cancels
    catastrophically from q ≈ 1e8 on.  Instead, per point, b = sqrt(1 + q),
    u = 1/(1 + q) and G = q/(1 + q) = 1 − u; per entry, ρ snapped as in
    :func:`correlation`, t = q12/b_x and δ² = P u_y S² with

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
    #: (130 kB each) they stay in cache.
    tile_size = 128

    def _point_features(self, q):
        # Per point, once per layer.  Nothing here overflows for any
        # representable q.
        w = 1.0 + q
        b = np.sqrt(w)
        return GeluFeatures(q, 1.0 / w, q / w, b, snapped_inverse_sqrt(q), q / b)

    def _dual(self, rows, cols, cov, scale, workspace):
        s_buffer, bracket_buffer, t_buffer, ratio_buffer = workspace
        u_x, big_g_x, b_x = (part[:, None] for part in (rows.u, rows.big_g, rows.b))
        u_y, big_g_y = cols.u[None, :], cols.big_g[None, :]
        factor = scale / _TWO_PI
        # S² = 1 + q22 (G_x (1 - ρ²) + u_x), ρ clipped to ±1.
        s = correlation(cov, rows.inverse_root, cols.inverse_root, out=s_buffer)
        np.multiply(s, s, out=s)
        np.subtract(1.0, s, out=s)
        s *= big_g_x
        s += u_x
        s *= cols.variance[None, :]
        s += 1.0
        bracket = np.divide(1.0, s, out=bracket_buffer)
        np.sqrt(s, out=s)
        t = np.multiply(cov, 1.0 / b_x, out=t_buffer)
        ratio = np.divide(t, s, out=ratio_buffer)
        # σ_w² (t/S) [u_x (1 + 1/S²) + u_y] / 2π, the last term of kdot.
        bracket += 1.0
        bracket *= u_x * factor
        bracket += u_y * factor
        bracket *= ratio
        # σ_w² [t (t/S) u_y / b_x + (q11/b_x) G_y S] / 2π, the last of k.
        t *= ratio
        t *= factor / b_x
        t *= u_y
        s *= factor * rows.variance_over_b[:, None]
        s *= big_g_y
        t += s
        # σ_w² (1/4 + ψ/2π), ψ = arctan(t/S), is kdot's first term; q12
        # times it is k's.
        kdot0 = np.arctan(ratio, out=s)
        kdot0 *= factor
        kdot0 += 0.25 * scale
        k = np.multiply(cov, kdot0, out=cov)
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

    def _dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        _, kdot = self.dual(rows, cols, cov)
        rho = correlation(cov, rows.inverse_root, cols.inverse_root)
        q11, q22 = rows.variance[:, None], cols.variance[None, :]
        x = tuple(part[:, None] for part in (rows.u, rows.big_g, rows.b))
        y = tuple(part[None, :] for part in (cols.u, cols.big_g, cols.b))
        k_x, k_y, kd_x, kd_y, kd_xy = self._partials(q11, q22, cov, rho, x, y)
        d11, d22 = d_rows[:, :, None], d_cols[:, None, :]
        dk = k_x * d11 + k_y * d22 + kdot * d_cov
        if max(np.max(rows.variance, initial=0.0),
               np.max(cols.variance, initial=0.0)) <= self._MODERATE_VARIANCE:
            # The cancellation below costs at most eps/u <= 5 eps here.
            return dk, kd_x * d11 + kd_y * d22 + kd_xy * d_cov
        # kdot's partials in q11 and q22 at fixed q12 nearly cancel with
        # ∂kdot/∂q12 · ∂q12/∂q11 near ρ = 1 (from O(u^1/2) to O(u^3/2) at
        # duplicates): kdot is differentiated at fixed ρ instead (see
        # _fixed_correlation_slopes), plus ∂kdot/∂ρ = s ∂kdot/∂q12 dρ.
        s, d_rho, inverse_rows, inverse_cols = correlation_tangents(
            cov, rho, rows.variance, cols.variance, d_rows, d_cols, d_cov)
        slope_x, slope_y = self._fixed_correlation_slopes(
            rho, x, y, inverse_rows[:, None], inverse_cols[None, :])
        dkdot = slope_x * d11 + slope_y * d22 + (kd_xy * s) * d_rho
        return dk, dkdot

    @staticmethod
    def _fixed_correlation_slopes(rho, x, y, inverse_x, inverse_y):
        """(∂kdot/∂q11, ∂kdot/∂q22) at fixed ρ.

        With r = ρ g_x g_y, D = 1 − r² (formed as in _dual()),
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

    @staticmethod
    def _diag_features(q):
        w = 1.0 + q
        return q, 1.0 / w, q / w, np.sqrt(w)

    def _dual_diag(self, q):
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

    def _dual_diag_tangents(self, q, dq):
        k, kdot = self._dual_diag(q)
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


_REGISTRY = {
    "relu": PiecewiseLinearActivation("relu", 0.0, 1.0),
    "leaky_relu": PiecewiseLinearActivation("leaky_relu", 0.01, 1.0),
    "abs": PiecewiseLinearActivation("abs", -1.0, 1.0),
    "erf": ErfActivation(),
    "identity": IdentityActivation(),
    "gelu": GeluActivation(),
    "sin": TrigonometricActivation("sin"),
    "cos": TrigonometricActivation("cos"),
    **NUMERICAL_ACTIVATIONS,
}

#: Names accepted by the ``activation`` parameter.
ACTIVATIONS = tuple(_REGISTRY)
#: Those of them with a closed-form dual, and those of the numerical path.
CLOSED_FORM_ACTIVATIONS = tuple(
    name for name in ACTIVATIONS if name not in NUMERICAL_ACTIVATIONS)
NUMERICAL_ACTIVATION_NAMES = tuple(NUMERICAL_ACTIVATIONS)

ACTIVATION_NAME_LISTS = {
    "activations": ACTIVATIONS,
    "closed_form_activations": CLOSED_FORM_ACTIVATIONS,
    "numerical_activations": NUMERICAL_ACTIVATION_NAMES,
}


def document_activations(docstring):
    """Fill a docstring's activation-name placeholders from the registry.

    A line holding only ``%(activations)s``, ``%(closed_form_activations)s``
    or ``%(numerical_activations)s`` becomes that list of quoted names,
    comma-separated and wrapped at the line's indentation, so that no
    documented list can fall out of step with ``_REGISTRY``.
    """
    lines = []
    for line in docstring.split("\n"):
        indent = line[: len(line) - len(line.lstrip())]
        key = line.strip()[2:-2] if line.strip().startswith("%(") else None
        if key in ACTIVATION_NAME_LISTS:
            names = ", ".join(f'"{name}"' for name in ACTIVATION_NAME_LISTS[key])
            lines.append(textwrap.fill(names, width=79, initial_indent=indent,
                                       subsequent_indent=indent,
                                       break_on_hyphens=False))
        else:
            lines.append(line)
    return "\n".join(lines)


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
        return callable_activation(activation, name)
    raise TypeError(
        "activation must be a string or a callable, got "
        f"{type(activation).__name__}: {activation!r}."
    )

