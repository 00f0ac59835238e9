"""The contract between an activation and the kernel recursion.

This module owns :class:`Activation`, the abstract base every activation
implements (closed forms in :mod:`sklearn_ntk._activations`, the numerical
path in :mod:`sklearn_ntk._numerical_activations`), the named per-point
features that cross the contract, and the per-entry helpers several
activations share (the snapped correlation and its tangents).

The recursion needs, for each pair of pre-activations (u, v) ~
N(0, [[q11, q12], [q12, q22]]), the *dual* of the activation σ,

    k(q11, q22, q12)    = E[σ(u) σ(v)]
    kdot(q11, q22, q12) = E[σ'(u) σ'(v)],

on a *tile* (rows × columns of points, ``cov`` the (n_rows, n_cols) array of
q12), on the *diagonal* (q11 = q22 = q12 = q, one value per point), and the
tangents (directional derivatives) of both along the two hyperparameter
directions (log β, log σ_w), given as a leading axis of length 2.  The
recursion passes σ_w² as ``scale`` and receives σ_w² k and σ_w² kdot (and
their tangents): that is the one place where σ_w² enters a layer (see
``docs/architecture.rst``).
"""

import abc
from typing import NamedTuple

import numpy as np

_TWO_PI = 2.0 * np.pi
#: Each point's factor of rho is scaled by 1 + 4 eps, so rho by (1 + 4 eps)²,
#: which rounds to 1 + 8 eps (see snapped_inverse_sqrt).
_SNAP_SCALE = 1.0 + 4.0 * np.finfo(float).eps


class VarianceFeatures(NamedTuple):
    """Per-point features of an activation that needs only the variances."""

    #: q(x, x) of each point.
    variance: np.ndarray


def take_points(features, start, stop):
    """The per-point features of points ``start:stop`` (None fields stay None)."""
    return type(features)(*(
        None if part is None else part[start:stop] for part in features))


class Activation(abc.ABC):
    """An activation σ with its dual kernels, as the recursion uses it.

    A subclass implements :meth:`function` and :meth:`derivative` (the
    pointwise σ and σ' of finite networks) and the four expectations the
    recursion needs, each in a hook the public methods call:

    ============================  ==========================================
    hook                          returns
    ============================  ==========================================
    :meth:`_dual`                 (scale · k, scale · kdot) on a tile
    :meth:`_dual_tangents`        (dk, dkdot) on a tile, shape (2, r, c)
    :meth:`_dual_diag`            (k, kdot) at q11 = q22 = q12 = q
    :meth:`_dual_diag_tangents`   (k, kdot, dk, dkdot) there, dk of (2, n)
    ============================  ==========================================

    Per-point quantities that every tile would otherwise recompute go in
    :meth:`prepare`, which returns one named tuple per point set: by
    default :meth:`_point_features` of each set's variances, which an
    activation overrides when its features depend on one set alone.

    **In-place evaluation** is the one way :meth:`_dual` is called: with a
    ``cov`` it may overwrite and :attr:`workspace_size` scratch arrays shaped
    like it.  An activation that computes in new arrays leaves
    ``workspace_size`` at 0 and ignores both.  Fresh tile-sized temporaries
    cost page faults on every tile, as glibc hands the memory back and forth
    with the system, so the common activations declare a workspace
    (benchmarks/results/scale.md, "Tile size").
    """

    #: The name the ``activation`` parameter accepts (or the callable's).
    name = None

    #: Whether σ is positively homogeneous of degree 1 (σ(c x) = c σ(x) for
    #: c > 0).  Then the kernels satisfy K(X; β, σ_w) = s² K(X/s; β/s, σ_w),
    #: which the recursion uses to bring any input scale into range.
    homogeneous = False

    #: Whether σ(x) = a·min(x, 0) + b·max(x, 0); such an activation also has
    #: the attributes ``negative_slope`` (a) and ``positive_slope`` (b), with
    #: which finite networks apply it in place.
    piecewise_linear = False

    #: Side of the tiles the recursion cuts for this activation (None: the
    #: recursion's default, which depends on :attr:`workspace_size`).
    tile_size = None

    #: Scratch arrays shaped like a tile that :meth:`_dual` computes in; 0 for
    #: an activation that allocates its own temporaries.
    workspace_size = 0

    @abc.abstractmethod
    def function(self, x):
        """σ(x), elementwise."""

    @abc.abstractmethod
    def derivative(self, x):
        """σ'(x), elementwise."""

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
        features : list of NamedTuple
            One per point set, whose fields are arrays indexed by point
            first (or None); :func:`take_points` slices them.
        """
        return [self._point_features(np.asarray(q, dtype=float)) for q in variances]

    def _point_features(self, q):
        """The features of one point set, from its variances ``q`` (float array)."""
        return VarianceFeatures(q)

    # -- what the recursion calls ---------------------------------------------
    def dual(self, rows, cols, cov, scale=1.0, workspace=None):
        """Return (scale · k, scale · kdot) for a tile.

        Parameters
        ----------
        rows, cols : NamedTuple
            :meth:`prepare`'s features of the row points and column points.
        cov : ndarray of shape (n_rows, n_cols)
            q12.  Overwritten if ``workspace`` is given.
        scale : float
            The recursion's σ_w², folded in where that saves a pass.
        workspace : sequence of ndarray, default=None
            :attr:`workspace_size` scratch arrays shaped like ``cov``.  None:
            new ones, and ``cov`` is left untouched.

        Returns
        -------
        k, kdot : ndarray of shape (n_rows, n_cols)
            Possibly in ``cov`` and the workspace: read them before the next
            call with the same buffers.
        """
        if workspace is None:
            cov = np.array(cov, dtype=float)
            workspace = tuple(np.empty_like(cov) for _ in range(self.workspace_size))
        return self._dual(rows, cols, cov, scale, workspace)

    def dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov, scale=1.0):
        """Return (scale · dk, scale · dkdot), new arrays of shape (2, n_rows, n_cols).

        ``d_rows`` (2, n_rows), ``d_cols`` (2, n_cols) and ``d_cov``
        (2, n_rows, n_cols) are the tangents of q11, q22 and q12 along the
        two hyperparameter directions.  ``cov`` is left untouched.  The values
        themselves always come from :meth:`dual`, so that K is the same bit
        for bit with and without gradients.
        """
        dk, dkdot = self._dual_tangents(rows, cols, cov, d_rows, d_cols, d_cov)
        dk *= scale
        dkdot *= scale
        return dk, dkdot

    def dual_diag(self, q, scale=1.0):
        """Return (scale · k, scale · kdot) at q11 = q22 = q12 = q (ρ = 1)."""
        k, kdot = self._dual_diag(np.asarray(q, dtype=float))
        return scale * k, scale * kdot

    def dual_diag_tangents(self, q, dq, scale=1.0):
        """Return scale · (k, kdot, dk, dkdot) on the diagonal; dq of shape (2, n)."""
        values = self._dual_diag_tangents(np.asarray(q, dtype=float), dq)
        return tuple(scale * value for value in values)

    # -- what a subclass implements -------------------------------------------
    @abc.abstractmethod
    def _dual(self, rows, cols, cov, scale, workspace):
        """(scale · k, scale · kdot), computed in ``cov`` and ``workspace``."""

    @abc.abstractmethod
    def _dual_tangents(self, rows, cols, cov, d_rows, d_cols, d_cov):
        """(dk, dkdot) of the unscaled k and kdot, in new arrays."""

    @abc.abstractmethod
    def _dual_diag(self, q):
        """(k, kdot) at q11 = q22 = q12 = q."""

    @abc.abstractmethod
    def _dual_diag_tangents(self, q, dq):
        """(k, kdot, dk, dkdot) at q11 = q22 = q12 = q; dk of the shape of dq."""

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


# -- per-entry helpers shared by activations --------------------------------

def inverse_sqrt(q):
    """(sqrt(q), 1/sqrt(q)), with 1/sqrt(q) = 0 where q == 0 (a zero-variance point)."""
    root = np.sqrt(q)
    inverse = np.zeros_like(root)
    np.divide(1.0, root, out=inverse, where=root > 0)
    return root, inverse


def snapped_inverse_sqrt(q):
    """Per-point factor of the correlation: 1/sqrt(q), times 1 + 4 eps.

    Duplicated or rescaled points have |rho| = 1 exactly, but rounding leaves
    1 - O(eps), which arccos amplifies to an angle of ~sqrt(eps) = 1e-8.  An
    angle that small is not resolvable from rounded inputs anyway, so rho,
    the product of a row's and a column's factor, is scaled by 1 + 8 eps
    before clipping: everything within 8 ulps of ±1 snaps to ±1, and nothing
    else moves by more than rounding does.
    """
    _, inverse = inverse_sqrt(q)
    inverse *= _SNAP_SCALE
    return inverse


def correlation(cov, inverse_rows, inverse_cols, out=None):
    """Return rho = q12 / sqrt(q11 q22) clipped to [-1, 1].

    ``inverse_rows`` and ``inverse_cols`` come from :func:`snapped_inverse_sqrt`,
    so the per-entry work is two multiplications.  Rows or columns of zero
    variance (a zero input with beta = 0) have an undefined correlation; their
    zero factor sets it to 0, i.e. an angle of pi/2, as in neural-tangents.
    """
    rho = np.multiply(cov, inverse_rows[:, None], out=out)
    rho *= inverse_cols[None, :]
    # The method rather than np.clip, whose Python wrapper holds the GIL
    # long enough to show in the scaling with n_jobs
    # (benchmarks/results/scale.md, "n_jobs").
    rho.clip(-1.0, 1.0, out=rho)
    return rho


def correlation_tangents(cov, rho, q_rows, q_cols, d_rows, d_cols, d_cov):
    """(s, dρ, 1/q11, 1/q22): s = sqrt(q11 q22), dρ its tangents, shape (2, ...).

    dρ = dq12 / s − (ρ/2)(dq11/q11 + dq22/q22), 0 where ρ was snapped to ±1:
    those pairs are duplicates (or antipodes) to rounding, for which dρ is 0
    exactly, while the formula would leave rounding noise of relative size
    eps/(1 − |ρ|).  Zero-variance points get 0 (their ρ is defined as 0).
    """
    sqrt_rows, inverse_sqrt_rows = inverse_sqrt(q_rows)
    sqrt_cols, inverse_sqrt_cols = inverse_sqrt(q_cols)
    inverse_rows, inverse_cols = inverse_sqrt_rows**2, inverse_sqrt_cols**2
    s = np.multiply.outer(sqrt_rows, sqrt_cols)
    d_rho = d_cov * inverse_sqrt_rows[:, None] * inverse_sqrt_cols[None, :]
    d_rho -= 0.5 * rho * (d_rows[:, :, None] * inverse_rows[:, None]
                          + d_cols[:, None, :] * inverse_cols[None, :])
    d_rho[:, np.abs(rho) == 1.0] = 0.0
    return s, d_rho, inverse_rows, inverse_cols
