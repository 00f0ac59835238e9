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
Hermite polynomials (Mehler's formula) with coefficients from Gauss–Hermite
quadrature; the number of terms is chosen adaptively from an exact bound on
the truncation error.

Every dual method works on a *tile*: ``rows`` and ``cols`` are the per-point
features returned by :meth:`prepare` for the row points and the column points,
and ``cov`` is the (n_rows, n_cols) array of q12.  Tangents carry a leading
axis of length 2, one per hyperparameter direction.
"""

import numbers

import numpy as np
from scipy.special import erf, expit, roots_hermite

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
# Numerical path: Hermite (Mehler) expansion with Gauss–Hermite coefficients.
# --------------------------------------------------------------------------

#: Relative accuracy of the truncated Hermite series (bound on the error of
#: k and kdot relative to E[σ(u)²] and E[σ'(u)²]).
QUADRATURE_TOLERANCE = 1e-9
_MAX_TERMS = 4096


def _gauss_hermite(n_nodes):
    """Nodes z and weights w with E[g(Z)] ≈ Σ w g(z) for Z ~ N(0, 1)."""
    nodes, weights = roots_hermite(n_nodes)
    return np.sqrt(2.0) * nodes, weights / np.sqrt(np.pi)


def _hermite_functions(nodes, weights, n_terms):
    """sqrt(w_j) · He_k(z_j)/sqrt(k!) for k < n_terms, shape (n_nodes, n_terms).

    Starting the three-term recurrence from sqrt(w_j) instead of 1 keeps every
    entry bounded (they are Hermite functions), so high degrees cannot overflow.
    """
    basis = np.empty((nodes.size, n_terms))
    basis[:, 0] = np.sqrt(weights)
    if n_terms > 1:
        basis[:, 1] = nodes * basis[:, 0]
    for degree in range(1, n_terms - 1):
        basis[:, degree + 1] = (
            nodes * basis[:, degree] - np.sqrt(degree) * basis[:, degree - 1]
        ) / np.sqrt(degree + 1)
    return basis


class QuadratureActivation(Activation):
    """Any smooth activation, through Mehler's formula.

    For u = sqrt(q11) z1 and v = sqrt(q22) z2 with corr(z1, z2) = ρ,
    E[g(u) h(v)] = Σ_k g_k(q11) h_k(q22) ρ^k where g_k(q) = E[g(sqrt(q) Z) ψ_k(Z)]
    and ψ_k = He_k / sqrt(k!) are the orthonormal Hermite polynomials.  The
    coefficients come from Gauss–Hermite quadrature.  By Cauchy–Schwarz the
    error of the series truncated after K terms is at most
    sqrt(tail(q11) tail(q22)) for every |ρ| <= 1, where
    tail(q) = E[g(sqrt(q) Z)²] − Σ_{k<K} g_k(q)² is known exactly, so K is
    increased until the tail falls below ``QUADRATURE_TOLERANCE`` times
    E[g²] at the largest variance present.  This is what "adaptive" means:
    large variances (tanh at q = 4) get hundreds of terms, small ones a few
    dozen.

    The derivative families needed are σ, σ' (for k and kdot) and, for the
    hyperparameter gradients, σ'' and σ''' (Price's theorem:
    ∂k/∂q11 = E[σ''(u)σ(v)]/2, ∂kdot/∂q11 = E[σ'''(u)σ'(v)]/2 and
    ∂kdot/∂q12 = E[σ''(u)σ''(v)]).

    Parameters
    ----------
    name : str
    derivatives : callable
        ``derivatives(x, order)`` returns σ^(order)(x) for order 0..3.
    """

    workspace_size = 3

    def __init__(self, name, derivatives):
        self.name = name
        self._derivatives = derivatives

    def function(self, x):
        return self._derivatives(np.asarray(x, dtype=float), 0)

    def derivative(self, x):
        return self._derivatives(np.asarray(x, dtype=float), 1)

    # -- one-dimensional expectations -------------------------------------
    def _expectation(self, integrand, q):
        """E[integrand(sqrt(q) Z)] for each q, with nodes doubled to convergence."""
        q = np.atleast_1d(np.asarray(q, dtype=float))
        previous = None
        for n_nodes in (32, 64, 128, 256, 512, 1024, 2048):
            nodes, weights = _gauss_hermite(n_nodes)
            values = integrand(np.sqrt(q)[:, None] * nodes[None, :]) @ weights
            if previous is not None and np.all(
                np.abs(values - previous) <= 1e-13 * (1.0 + np.abs(values))
            ):
                return values
            previous = values
        return values

    def _moment(self, order_left, order_right, q):
        return self._expectation(
            lambda x: self._derivatives(x, order_left) * self._derivatives(x, order_right),
            q,
        )

    # -- Hermite coefficients ---------------------------------------------
    def _n_terms(self, q_max, orders):
        """Smallest number of terms whose tail bound meets the tolerance at q_max.

        The tail after K terms, E[g²] − Σ_{k<K} g_k², is read off the cumulative
        sum of one coefficient computation; the candidate length doubles only
        when even the longest series is not accurate enough.
        """
        q_max = np.atleast_1d(q_max)
        second_moments = np.array([self._moment(order, order, q_max)[0] for order in orders])
        allowed = QUADRATURE_TOLERANCE * np.maximum(second_moments, 1e-300)
        candidate = 64
        while True:
            coefficients = self._coefficients(q_max, orders, candidate)[0]
            tails = second_moments[:, None] - np.cumsum(coefficients**2, axis=1)
            accurate = np.all(tails <= allowed[:, None], axis=0)
            if accurate.any():
                return int(np.argmax(accurate)) + 1
            if candidate >= _MAX_TERMS:
                raise ValueError(
                    f"The Hermite expansion of activation {self.name!r} did not reach "
                    f"relative accuracy {QUADRATURE_TOLERANCE:g} with {_MAX_TERMS} "
                    f"terms at pre-activation variance {q_max[0]:.3g}. The terms "
                    "needed grow in proportion to the variance: standardise the "
                    "inputs or lower weight_std and beta."
                )
            candidate *= 2

    def _coefficients(self, q, orders, n_terms):
        """Array (n_points, len(orders), n_terms) of Hermite coefficients."""
        # The integrand σ^(m)(sqrt(q) z) ψ_k(z) has degree ~ n_terms + (degree of
        # σ's polynomial approximation); twice the terms plus a margin suffices.
        n_nodes = 2 * n_terms + 64
        nodes, weights = _gauss_hermite(n_nodes)
        basis = _hermite_functions(nodes, weights, n_terms)
        arguments = np.sqrt(q)[:, None] * nodes[None, :]
        sqrt_weights = np.sqrt(weights)
        coefficients = np.empty((q.size, len(orders), n_terms))
        for index, order in enumerate(orders):
            values = self._derivatives(arguments, order) * sqrt_weights
            coefficients[:, index, :] = values @ basis
        return coefficients

    def prepare(self, variances, eval_gradient=False):
        variances = [np.asarray(q, dtype=float) for q in variances]
        q_max = max(float(np.max(q)) for q in variances if q.size)
        n_terms = self._n_terms(q_max, (0, 1))
        if not eval_gradient:
            return [
                (q, self._coefficients(q, (0, 1), n_terms), _snapped_inverse_sqrt(q))
                for q in variances
            ]
        # The derivative families need more terms.  The value families keep
        # their own series, zero-padded, so that K is bit for bit the same
        # with and without eval_gradient (trailing zeros leave Horner exact).
        n_gradient_terms = max(n_terms, self._n_terms(q_max, (2, 3)))
        features = []
        for q in variances:
            coefficients = np.zeros((q.size, 4, n_gradient_terms))
            coefficients[:, :2, :n_terms] = self._coefficients(q, (0, 1), n_terms)
            coefficients[:, 2:] = self._coefficients(q, (2, 3), n_gradient_terms)
            features.append((q, coefficients, _snapped_inverse_sqrt(q)))
        return features

    @staticmethod
    def _mehler(rho, left, right, out=None, term=None):
        """Σ_k left[:, k] right[:, k] ρ^k by Horner's rule, in place.

        ``out`` receives the sum and ``term`` is scratch (both new if None).
        """
        n_terms = left.shape[1]
        total = np.empty_like(rho) if out is None else out
        constant = np.ptp(left, axis=0).max() == 0 and np.ptp(right, axis=0).max() == 0
        if constant:
            # Equal variances everywhere (e.g. inputs on a sphere): scalar Horner.
            scalars = left[0] * right[0]
            total.fill(scalars[-1])
            for degree in range(n_terms - 2, -1, -1):
                total *= rho
                total += scalars[degree]
            return total
        term = np.empty_like(rho) if term is None else term
        np.multiply.outer(left[:, -1], right[:, -1], out=total)
        for degree in range(n_terms - 2, -1, -1):
            total *= rho
            np.multiply.outer(left[:, degree], right[:, degree], out=term)
            total += term
        return total

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        in_place = workspace is not None
        if not in_place:
            workspace = [np.empty_like(cov) for _ in range(self.workspace_size)]
        (_, c_rows, inverse_rows), (_, c_cols, inverse_cols) = rows, cols
        rho = _correlation(cov, inverse_rows, inverse_cols, out=workspace[0])
        kdot = self._mehler(rho, c_rows[:, 1], c_cols[:, 1], workspace[1], workspace[2])
        # cov is no longer needed once rho is formed: with a workspace, k goes there.
        k = self._mehler(rho, c_rows[:, 0], c_cols[:, 0], cov if in_place else None,
                         workspace[2])
        if scale != 1.0:
            k *= scale
            kdot *= scale
        return k, kdot

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        (_, c_rows, inverse_rows), (_, c_cols, inverse_cols) = rows, cols
        rho = _correlation(cov, inverse_rows, inverse_cols)

        def series(left, right):
            return self._mehler(rho, c_rows[:, left], c_cols[:, right])

        k, kdot = series(0, 0), series(1, 1)
        dk = (
            0.5 * series(2, 0)[None] * d_rows[:, :, None]
            + 0.5 * series(0, 2)[None] * d_cols[:, None, :]
            + kdot[None] * d_cov
        )
        dkdot = (
            0.5 * series(3, 1)[None] * d_rows[:, :, None]
            + 0.5 * series(1, 3)[None] * d_cols[:, None, :]
            + series(2, 2)[None] * d_cov
        )
        return dk, dkdot

    def dual_diag(self, q):
        return self._moment(0, 0, q), self._moment(1, 1, q)

    def dual_diag_jvp(self, q, dq):
        k, kdot = self.dual_diag(q)
        # Heat equation: d/dq E[F(sqrt(q) Z)] = E[F''(sqrt(q) Z)] / 2.
        dk_dq = self._moment(1, 1, q) + self._moment(0, 2, q)
        dkdot_dq = self._moment(2, 2, q) + self._moment(1, 3, q)
        return k, kdot, dk_dq * dq, dkdot_dq * dq


def _tanh_derivatives(x, order):
    t = np.tanh(x)
    if order == 0:
        return t
    slope = 1.0 - t * t
    if order == 1:
        return slope
    if order == 2:
        return -2.0 * t * slope
    return slope * (6.0 * t * t - 2.0)


def _sigmoid_derivatives(x, order):
    s = expit(x)
    if order == 0:
        return s
    slope = s * (1.0 - s)
    if order == 1:
        return slope
    if order == 2:
        return slope * (1.0 - 2.0 * s)
    return slope * (1.0 - 6.0 * slope)


def _softplus_derivatives(x, order):
    if order == 0:
        return np.logaddexp(0.0, x)
    return _sigmoid_derivatives(x, order - 1)


# Central finite-difference stencils of fourth order (offsets -3h..3h) and the
# step h = eps^(1/(order + 4)) that balances truncation against rounding.
_STENCILS = {
    1: np.array([0.0, 1.0 / 12, -8.0 / 12, 0.0, 8.0 / 12, -1.0 / 12, 0.0]),
    2: np.array([0.0, -1.0 / 12, 16.0 / 12, -30.0 / 12, 16.0 / 12, -1.0 / 12, 0.0]),
    3: np.array([1.0 / 8, -1.0, 13.0 / 8, 0.0, -13.0 / 8, 1.0, -1.0 / 8]),
}


class _CallableDerivatives:
    """Derivatives of a user callable by central finite differences.

    Fourth-order stencils with steps scaled to |x|: σ' is accurate to about
    1e-12, σ'' to 1e-10 and σ''' (used only by gradients) to about 1e-8,
    relative, for smooth σ.
    """

    def __init__(self, function):
        self.function = function

    def __call__(self, x, order):
        x = np.asarray(x, dtype=float)
        if order == 0:
            return np.asarray(self.function(x), dtype=float)
        step = np.finfo(float).eps ** (1.0 / (order + 4)) * np.maximum(1.0, np.abs(x))
        total = np.zeros_like(x)
        for offset, weight in zip(range(-3, 4), _STENCILS[order]):
            if weight:
                total += weight * np.asarray(self.function(x + offset * step), dtype=float)
        return total / step**order

    def __eq__(self, other):
        return isinstance(other, _CallableDerivatives) and other.function is self.function

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


def check_depth(depth):
    """Validate the ``depth`` parameter (an integer >= 1)."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
        raise TypeError(f"depth must be an integer >= 1, got {depth!r}.")
    if depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}.")
    return int(depth)
