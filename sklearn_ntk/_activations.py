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


class Activation:
    """Base class of an activation with its dual kernels.

    Subclasses implement :meth:`dual`, :meth:`dual_tangents`, :meth:`dual_diag`
    and :meth:`dual_diag_jvp` and the pointwise :meth:`function` and
    :meth:`derivative` used by finite networks.
    """

    name = None

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
    """σ = erf: the arcsine kernel of Williams (1997)."""

    name = "erf"

    def function(self, x):
        return erf(x)

    def derivative(self, x):
        return (2.0 / np.sqrt(np.pi)) * np.exp(-np.square(x))

    workspace_size = 2

    def prepare(self, variances, eval_gradient=False):
        # (q, 1 + 2q) per point, once per layer rather than once per tile.
        variances = [np.asarray(q, dtype=float) for q in variances]
        return [(q, 1.0 + 2.0 * q) for q in variances]

    @staticmethod
    def _product(rows, cols, out=None):
        return np.multiply(rows[1][:, None], cols[1][None, :], out=out)

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        in_place = workspace is not None
        if not in_place:
            workspace = [np.empty_like(cov) for _ in range(self.workspace_size)]
        product = self._product(rows, cols, out=workspace[0])
        # kdot = (4/π) / sqrt(product - 4 q12²); product - 4 q12² >=
        # 1 + 2 q11 + 2 q22 > 0, so nothing is singular.
        kdot = np.multiply(cov, cov, out=workspace[1])
        kdot *= -4.0
        kdot += product
        np.sqrt(kdot, out=kdot)
        np.divide(4.0 / np.pi * scale, kdot, out=kdot)
        # k = (2/π) arcsin(2 q12 / sqrt(product)).
        np.sqrt(product, out=product)
        k = np.divide(cov, product, out=cov if in_place else product)
        k *= 2.0
        k.clip(-1.0, 1.0, out=k)
        np.arcsin(k, out=k)
        k *= 2.0 / np.pi * scale
        return k, kdot

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        k, kdot = self.dual(rows, cols, cov)
        # rows[1] and cols[1] are 1 + 2q, the factors of the product.
        d_product = (
            2.0 * d_rows[:, :, None] * cols[1][None, None, :]
            + 2.0 * d_cols[:, None, :] * rows[1][None, :, None]
        )
        product = self._product(rows, cols)
        denominator = product - 4.0 * cov * cov
        # k = (2/π) arcsin(2 q12 / sqrt(P)):  dk = (2/π) d(ratio) sqrt(P / (P - 4 q12²)).
        d_ratio = 2.0 * d_cov / np.sqrt(product) - cov / product**1.5 * d_product
        dk = (2.0 / np.pi) * d_ratio * np.sqrt(product / denominator)
        dkdot = -0.5 * kdot * (d_product - 8.0 * cov * d_cov) / denominator
        return dk, dkdot

    def dual_diag(self, q):
        q = np.asarray(q, dtype=float)
        k = (2.0 / np.pi) * np.arcsin(2.0 * q / (1.0 + 2.0 * q))
        kdot = (4.0 / np.pi) / np.sqrt(1.0 + 4.0 * q)
        return k, kdot

    def dual_diag_jvp(self, q, dq):
        k, kdot = self.dual_diag(q)
        root = np.sqrt(1.0 + 4.0 * q)
        dk = (4.0 / np.pi) * dq / ((1.0 + 2.0 * q) * root)
        dkdot = -2.0 * kdot * dq / (1.0 + 4.0 * q)
        return k, kdot, dk, dkdot


class IdentityActivation(Activation):
    """σ(x) = x: every layer is linear, k = q12 and kdot = 1."""

    name = "identity"

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
    Both exponentials are formed as exp(±q12 - m) <= 1, which cannot overflow.
    """

    def __init__(self, name):
        self.name = name
        self._sign = -1.0 if name == "sin" else 1.0

    def function(self, x):
        return np.sin(x) if self.name == "sin" else np.cos(x)

    def derivative(self, x):
        return np.cos(x) if self.name == "sin" else -np.sin(x)

    workspace_size = 3

    def prepare(self, variances, eval_gradient=False):
        # (q, q/2) per point, once per layer rather than once per tile.
        variances = [np.asarray(q, dtype=float) for q in variances]
        return [(q, 0.5 * q) for q in variances]

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

    def dual(self, rows, cols, cov, workspace=None, scale=1.0):
        in_place = workspace is not None
        if not in_place:
            workspace = [np.empty_like(cov) for _ in range(self.workspace_size)]
        up = np.subtract(cov, rows[1][:, None], out=workspace[0])
        up -= cols[1][None, :]
        down = np.add(cov, rows[1][:, None], out=workspace[1])
        down += cols[1][None, :]
        np.negative(down, out=down)
        np.exp(up, out=up)
        np.exp(down, out=down)
        return self._pair(up, down, scale, out=(cov if in_place else None, workspace[2]))

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        k, kdot = self.dual(rows, cols, cov)
        d_mean = 0.5 * (d_rows[:, :, None] + d_cols[:, None, :])
        dk = -d_mean * k[None] + kdot[None] * d_cov
        dkdot = -d_mean * kdot[None] + k[None] * d_cov
        return dk, dkdot

    def dual_diag(self, q):
        q = np.asarray(q, dtype=float)
        # m = q12 = q: up = exp(0) = 1 and down = exp(-2q).
        return self._pair(np.ones_like(q), np.exp(-2.0 * q))

    def dual_diag_jvp(self, q, dq):
        k, kdot = self.dual_diag(q)
        # d/dq of e^{-q} sinh q (or cosh q) along q11 = q22 = q12 = q.
        return k, kdot, (kdot - k) * dq, (k - kdot) * dq


class GeluActivation(Activation):
    """σ(x) = x Φ(x), the exact GELU (Φ the standard normal CDF).

    With q = q12, p = q11 q22, P = (1 + q11)(1 + q22), δ = sqrt(P − q²) and
    ψ = arcsin(q / sqrt P):
    k = q/4 + [(q² + p δ²)/(P δ) + q ψ] / 2π and
    kdot = 1/4 + ψ/2π + q [1/δ² + (1 − p)/P + 1] / (2π δ).
    δ >= 1, so nothing is singular.
    """

    name = "gelu"

    def function(self, x):
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))

    def derivative(self, x):
        return 0.5 * (1.0 + erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(
            _TWO_PI
        )

    @staticmethod
    def _terms(q11, q22, q):
        p = q11 * q22
        big_p = (1.0 + q11) * (1.0 + q22)
        delta_sq = big_p - q * q
        delta = np.sqrt(delta_sq)
        ratio = np.clip(q / np.sqrt(big_p), -1.0, 1.0)
        psi = np.arcsin(ratio)
        numerator = q * q + p * delta_sq
        bracket = 1.0 / delta_sq + (1.0 - p) / big_p + 1.0
        k = 0.25 * q + (numerator / (big_p * delta) + q * psi) / _TWO_PI
        kdot = 0.25 + psi / _TWO_PI + q * bracket / (_TWO_PI * delta)
        return k, kdot, (p, big_p, delta_sq, delta, psi, numerator, bracket)

    @staticmethod
    def _tangents(q11, q22, q, d11, d22, dq, k, kdot, parts):
        p, big_p, delta_sq, delta, psi, numerator, bracket = parts
        dp = d11 * q22 + q11 * d22
        d_big_p = d11 * (1.0 + q22) + (1.0 + q11) * d22
        d_delta_sq = d_big_p - 2.0 * q * dq
        d_delta = d_delta_sq / (2.0 * delta)
        sqrt_big_p = np.sqrt(big_p)
        d_ratio = dq / sqrt_big_p - (q / sqrt_big_p) * d_big_p / (2.0 * big_p)
        # d arcsin(r) = dr / sqrt(1 - r²) and sqrt(1 - r²) = δ / sqrt(P).
        d_psi = d_ratio * sqrt_big_p / delta
        d_numerator = 2.0 * q * dq + dp * delta_sq + p * d_delta_sq
        denominator = big_p * delta
        d_fraction = (
            d_numerator / denominator
            - numerator * (d_big_p * delta + big_p * d_delta) / denominator**2
        )
        dk = 0.25 * dq + (d_fraction + dq * psi + q * d_psi) / _TWO_PI
        d_bracket = -d_delta_sq / delta_sq**2 + (-dp * big_p - (1.0 - p) * d_big_p) / (
            big_p**2
        )
        d_q_over_delta = dq / delta - q * d_delta / delta_sq
        dkdot = d_psi / _TWO_PI + (d_q_over_delta * bracket + (q / delta) * d_bracket) / (
            _TWO_PI
        )
        return dk, dkdot

    def _dual(self, rows, cols, cov):
        k, kdot, _ = self._terms(rows[0][:, None], cols[0][None, :], cov)
        return k, kdot

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        q11, q22 = rows[0][:, None], cols[0][None, :]
        k, kdot, parts = self._terms(q11, q22, cov)
        dk, dkdot = self._tangents(
            q11[None], q22[None], cov[None],
            d_rows[:, :, None], d_cols[:, None, :], d_cov,
            k, kdot, tuple(part[None] if np.ndim(part) else part for part in parts),
        )
        return dk, dkdot

    def dual_diag(self, q):
        q = np.asarray(q, dtype=float)
        k, kdot, _ = self._terms(q, q, q)
        return k, kdot

    def dual_diag_jvp(self, q, dq):
        q = np.asarray(q, dtype=float)
        k, kdot, parts = self._terms(q, q, q)
        dk, dkdot = self._tangents(
            q[None], q[None], q[None], dq, dq, dq,
            k, kdot, tuple(part[None] for part in parts),
        )
        return k, kdot, dk, dkdot


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

