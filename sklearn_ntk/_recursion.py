"""The NNGP/NTK recursion of fully-connected networks: the one place it lives.

For a network of ``depth`` L dense layers in NTK parametrization,

    Σ¹(x, x')   = σ_w² xᵀx'/n0 + β²,            Θ¹ = Σ¹
    Σˡ⁺¹        = σ_w² E[σ(u)σ(v)] + β²,        Σ̇ˡ⁺¹ = σ_w² E[σ'(u)σ'(v)]
    Θˡ⁺¹        = Θˡ Σ̇ˡ⁺¹ + Σˡ⁺¹

with (u, v) Gaussian of covariance Σˡ.  The NNGP kernel is Σᴸ and the NTK is
Θᴸ (the mathematics: ``docs/user_guide.rst``).  Gradients are carried
forward in the same pass (forward-mode differentiation) with respect to
θ = (log β, log σ_w), the hyperparameter order of the kernels.

What this module owns, top to bottom:

* **The mathematics of one layer**, written once: :func:`layer_values` and
  :func:`layer_tangents` (plain, as above), and their in-place twins
  :func:`layer_values_in_place` and :func:`layer_tangents_in_place`, the
  optimisation the tiles use (tested equal to the plain ones bit for bit).
  The Gaussian expectations come from the activation
  (:mod:`sklearn_ntk._activation_interface`), already multiplied by σ_w²: the
  recursion passes σ_w² as the activation's ``scale``, and that is the one
  place where σ_w² enters a layer.
* **The diagonal** Σˡ(x, x), Θˡ(x, x) of every point by an O(n·L) recursion
  of its own (:func:`diagonal`), which uses the plain layer.
* **A tile** (:func:`_tile`): a block of rows against a block of columns run
  through all L layers in one reused workspace (:class:`_Workspace`), so that
  beyond the output only O(tile) memory is used.
* **Scheduling** (:func:`_schedule` and below): cutting the matrix into tiles
  and tasks, choosing workspaces, running them with :class:`joblib.Parallel`
  (threads write into the output; other backends return blocks), and, for
  K(X, X), computing only tiles on or above the diagonal and mirroring them.
  The diagonal of K(X, X) is copied from :func:`diagonal`, so that
  ``K(X)[i, i] == diag(X)[i]`` bit for bit.
* **Range**: homogeneous activations are run at unit scale and rescaled, and
  overflow and underflow are reported as errors naming the input scale.

The values take the same arithmetic with and without ``eval_gradient``
(the tangents are computed beside them, never in their place), so K is the
same bit for bit with and without gradients.
"""

import functools
import queue
from dataclasses import dataclass, replace

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import get_active_backend
from threadpoolctl import ThreadpoolController

from ._activation_interface import take_points
from ._activations import get_activation
from ._range import (
    TINY,
    checked_range,
    floating_point_checks,
    max_abs,
    power_of_two_exponent,
    range_error,
)

#: Side of the square tiles when the activation's dual works in place.  With
#: threads, every numpy call on a tile releases and retakes the GIL, and
#: contended hand-overs are expensive: 320-row tiles make the calls long
#: enough for n_jobs=2 to scale where 192-row tiles did not; one thread is as
#: fast with either (benchmarks/results/scale.md, "Tile size").
TILE_SIZE = 320

#: Side of the tiles when the activation's dual allocates its temporaries
#: (``workspace_size`` 0).  Larger tiles push them past glibc's thresholds
#: for handing memory back to the system, and every tile then faults it in
#: again (benchmarks/results/scale.md, "Tile size").
#: The tile size never depends on eval_gradient, so that K is the same bit
#: for bit with and without gradients.
ALLOCATING_TILE_SIZE = 128

#: Tiles computed one after the other by a task, through one workspace.
TILES_PER_TASK = 8

#: Positively homogeneous activations (relu, leaky_relu, abs, identity) obey
#: K(X; β, σ_w) = s² K(X/s; β/s, σ_w) for every s > 0 (each layer's
#: covariance scales by s², Σ̇ not at all, hence Θ by s²; d/d log β commutes
#: with the rescaling, so the gradients scale by s² too).  With s = 2^e the
#: rescaling is exact in floating point, so inputs of any scale run at unit
#: scale, s ~ max(σ_w max|x|, β), and the results are scaled back: bit for
#: bit s² times the unit-scale results.  Within 2^±64 of unit scale nothing
#: is rescaled (it would change nothing but cost two passes).
UNSCALED_EXPONENTS = 64

#: Squared input norms are summed directly when max |x| is within 2^±400
#: (no sum of n0 squares can overflow or lose precision to underflow);
#: otherwise from X / 2^e, and scaled back.
_DIRECT_NORM_EXPONENTS = 400

#: The values of ``kernel=`` and the matrices each asks for (nngp, ntk).
KERNEL_CHOICES = {"ntk": (False, True), "nngp": (True, False), "both": (True, True)}

#: Index of each hyperparameter direction on a tangent's leading axis.
LOG_BETA, LOG_WEIGHT_STD = 0, 1


# -- The mathematics of one layer ---------------------------------------------
#
# ``k`` and ``kdot`` are what the activation returns with scale = σ_w²:
# σ_w² E[σ(u)σ(v)] and σ_w² E[σ'(u)σ'(v)] = Σ̇ˡ⁺¹; ``dk`` and ``dkdot`` their
# tangents σ_w² dE (leading axis: LOG_BETA, LOG_WEIGHT_STD).  The plain
# functions serve the diagonal and are the reference; the in-place ones
# serve the tiles, where a new tile-sized array per operation would cost a
# page fault per page (see ``_Workspace``).


def first_layer_tangents(nngp, bias_var):
    """Tangents of Σ¹ = σ_w² xᵀx'/n0 + β² along (log β, log σ_w): 2β², 2(Σ¹ − β²)."""
    return np.stack([np.full_like(nngp, 2.0 * bias_var), 2.0 * (nngp - bias_var)])


def layer_values(k, kdot, ntk, bias_var):
    """One layer: Σˡ⁺¹ = σ_w² E[σ(u)σ(v)] + β² and Θˡ⁺¹ = Θˡ Σ̇ˡ⁺¹ + Σˡ⁺¹.

    Parameters
    ----------
    k, kdot : ndarray
        σ_w² E[σ(u)σ(v)] and Σ̇ˡ⁺¹ = σ_w² E[σ'(u)σ'(v)], with (u, v) of
        covariance Σˡ.
    ntk : ndarray
        Θˡ.
    bias_var : float
        β².

    Returns
    -------
    nngp, ntk : ndarray
        Σˡ⁺¹ and Θˡ⁺¹, new arrays.
    """
    nngp = k + bias_var
    return nngp, ntk * kdot + nngp


def layer_tangents(k, kdot, dk, dkdot, ntk, d_ntk, bias_var):
    """Tangents of :func:`layer_values` along (log β, log σ_w).

    dΣˡ⁺¹ = σ_w² dE[σσ] + (2β², 2σ_w² E[σσ]), the second terms from the
    factors β² and σ_w² themselves; likewise dΣ̇ˡ⁺¹ = σ_w² dE[σ'σ'] +
    (0, 2 Σ̇ˡ⁺¹); and dΘˡ⁺¹ = dΘˡ Σ̇ˡ⁺¹ + Θˡ dΣ̇ˡ⁺¹ + dΣˡ⁺¹.

    Parameters
    ----------
    k, kdot, ntk, bias_var
        As for :func:`layer_values`.
    dk, dkdot : ndarray of shape (2,) + k.shape
        σ_w² times the tangents of E[σ(u)σ(v)] and E[σ'(u)σ'(v)].
    d_ntk : ndarray of shape (2,) + k.shape
        dΘˡ.

    Returns
    -------
    d_nngp, d_ntk : ndarray of shape (2,) + k.shape
        dΣˡ⁺¹ and dΘˡ⁺¹, new arrays.
    """
    d_nngp = dk.copy()
    d_nngp[LOG_BETA] += 2.0 * bias_var
    d_nngp[LOG_WEIGHT_STD] += 2.0 * k
    d_slope = dkdot.copy()
    d_slope[LOG_WEIGHT_STD] += 2.0 * kdot
    return d_nngp, d_ntk * kdot + ntk * d_slope + d_nngp


def layer_values_in_place(k, kdot, ntk, bias_var):
    """:func:`layer_values`, written over its inputs.

    Σˡ⁺¹ replaces ``k`` and Θˡ⁺¹ replaces ``ntk`` (None: Θ is not tracked);
    ``kdot`` is only read.  Returns the same buffers, renamed.
    """
    nngp = k
    nngp += bias_var
    if ntk is not None:
        ntk *= kdot
        ntk += nngp
    return nngp, ntk


def layer_tangents_in_place(k, kdot, dk, dkdot, ntk, d_ntk, bias_var):
    """:func:`layer_tangents`, written over its inputs.

    dΣˡ⁺¹ replaces ``dk`` and dΘˡ⁺¹ replaces ``d_ntk`` (None: Θ is not
    tracked); ``dkdot`` becomes dΣ̇ˡ⁺¹ on the way.  ``ntk`` must still be Θˡ:
    call this before :func:`layer_values_in_place`.  Returns
    (dΣˡ⁺¹, dΘˡ⁺¹), the same buffers renamed.
    """
    d_nngp = dk
    d_nngp[LOG_BETA] += 2.0 * bias_var
    d_nngp[LOG_WEIGHT_STD] += 2.0 * k
    d_slope = dkdot
    d_slope[LOG_WEIGHT_STD] += 2.0 * kdot
    if d_ntk is not None:
        d_ntk *= kdot
        d_ntk += ntk * d_slope
        d_ntk += d_nngp
    return d_nngp, d_ntk


@functools.lru_cache(maxsize=1)
def _blas_controller():
    # threadpoolctl comes with scikit-learn (a hard dependency of it).
    # Scanning the loaded libraries costs ~10 ms: do it once per process.
    return ThreadpoolController()


def single_threaded_blas():
    """Context manager limiting BLAS to one thread for its duration."""
    return _blas_controller().limit(limits=1, user_api="blas")


@dataclass
class Kernels:
    """Result of :func:`kernel_matrices`.

    Each matrix has shape (n_x, n_y), or (depth, n_x, n_y) with
    ``all_depths=True`` (index l - 1 holds depth l); each gradient has one
    more trailing axis of length 2: d/d log β, d/d log σ_w.  Entries not
    requested are None.
    """

    nngp: np.ndarray = None
    ntk: np.ndarray = None
    nngp_gradient: np.ndarray = None
    ntk_gradient: np.ndarray = None

    def present(self):
        """(name, array) of the entries that are not None."""
        return [(name, values) for name, values in vars(self).items()
                if values is not None]

    def map(self, function):
        """A Kernels of ``function(array)`` for each entry that is not None."""
        return Kernels(**{name: function(values) for name, values in self.present()})


@dataclass
class Diagonals:
    """Result of :func:`diagonal`: arrays of shape (depth, n) (and (depth, n, 2))."""

    nngp: np.ndarray
    ntk: np.ndarray
    nngp_gradient: np.ndarray = None
    ntk_gradient: np.ndarray = None


def _input_exponent(activation, arrays, beta, weight_std):
    """e such that a homogeneous activation runs on X / 2^e and β / 2^e (or 0).

    See UNSCALED_EXPONENTS; other activations are never rescaled.
    """
    if not activation.homogeneous:
        return 0
    candidates = []
    largest = max_abs(*arrays)
    if largest:
        # 2^e ~ σ_w max|x|, from exponents so that nothing can overflow.
        candidates.append(
            power_of_two_exponent(largest) + power_of_two_exponent(weight_std)
        )
    if beta:
        candidates.append(power_of_two_exponent(beta))
    exponent = max(candidates, default=0)
    return exponent if abs(exponent) > UNSCALED_EXPONENTS else 0


def _mean_squares(X):
    """Σ_j x_ij² / n0 for each row, without overflow in the sum."""
    exponent = power_of_two_exponent(max_abs(X))
    if abs(exponent) <= _DIRECT_NORM_EXPONENTS:
        return np.einsum("ij,ij->i", X, X) / X.shape[1]
    scaled = np.ldexp(X, -exponent)
    return np.ldexp(np.einsum("ij,ij->i", scaled, scaled) / X.shape[1], 2 * exponent)


def _check_underflow(final_layers, first_layer, positive, arrays, beta, weight_std):
    """Raise if a kernel's scale fell below the normal range of float64.

    ``final_layers`` are the returned depths' diagonals (Σ or Θ of every
    point): every entry of a PSD kernel is bounded by them, so their maximum
    is the scale of the matrix.  A subnormal scale has lost precision; a zero
    scale is exact only if nothing underflowed on the way, i.e. unless the
    first-layer variances, truly positive (``positive``: some x != 0 or
    β > 0), came out below the normal range.  Entries far below the scale of
    their matrix may underflow to 0: that is within the accuracy relative to
    the scale that the kernels have at unit scale too.
    """
    first_underflow = positive and max_abs(first_layer) < TINY
    for values in final_layers:
        scale = max_abs(values)
        if scale < TINY and (scale > 0 or first_underflow):
            raise range_error(
                "The kernel values underflow below the smallest normal float64 "
                f"({TINY:.3g}), where they lose precision",
                arrays, beta, weight_std,
            )


def _rescale(arrays, exponent):
    """Multiply each array by 2^exponent in place (exact unless out of range)."""
    for values in arrays:
        if values is not None:
            np.ldexp(values, exponent, out=values)


# -- The diagonal ---------------------------------------------------------------


def diagonal(X, *, depth, activation, beta, weight_std, eval_gradient=False):
    """Σˡ(x, x) and Θˡ(x, x) for every point and every depth l = 1..L.

    O(n·L) time and memory; never forms an n × n array.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    depth : int
    activation : str, callable or Activation
    beta, weight_std : float
    eval_gradient : bool
        Also return the derivatives with respect to (log β, log σ_w).

    Returns
    -------
    diagonals : Diagonals

    Raises
    ------
    ValueError
        If the values are not representable in float64 (they overflow, or
        their scale underflows), naming the input scale.
    """
    activation = get_activation(activation)
    exponent = _input_exponent(activation, (X,), beta, weight_std)
    with checked_range("The kernel values", (X,), beta, weight_std):
        if exponent:
            result = _diagonal(np.ldexp(X, -exponent), depth, activation,
                               np.ldexp(beta, -exponent), weight_std, eval_gradient)
            _rescale(vars(result).values(), 2 * exponent)
        else:
            result = _diagonal(X, depth, activation, beta, weight_std, eval_gradient)
    _check_underflow(
        [result.nngp[-1], result.ntk[-1]], result.nngp[0],
        bool(beta) or max_abs(X) > 0, (X,), beta, weight_std,
    )
    return result


def _diagonal(X, depth, activation, beta, weight_std, eval_gradient):
    """:func:`diagonal` at the scale given, without checks: the plain layer."""
    n_samples = X.shape[0]
    weight_var, bias_var = weight_std**2, beta**2
    nngp = np.empty((depth, n_samples))
    ntk = np.empty((depth, n_samples))
    # The first layer, Σ¹ = σ_w² |x|²/n0 + β², from the squared norms (the
    # tiles take products of X scaled by σ_w²/n0, see _block).
    nngp[0] = ntk[0] = weight_var * _mean_squares(X) + bias_var
    if eval_gradient:
        # Each layer's tangents as (2, n), stored (n, 2) like the kernels'.
        nngp_gradient = np.empty((depth, n_samples, 2))
        ntk_gradient = np.empty((depth, n_samples, 2))
        d_nngp = first_layer_tangents(nngp[0], bias_var)
        d_ntk = d_nngp.copy()
        nngp_gradient[0] = ntk_gradient[0] = d_nngp.T
    for layer in range(1, depth):
        if eval_gradient:
            k, kdot, dk, dkdot = activation.dual_diag_tangents(
                nngp[layer - 1], d_nngp, scale=weight_var)
            d_nngp, d_ntk = layer_tangents(k, kdot, dk, dkdot, ntk[layer - 1], d_ntk,
                                           bias_var)
            nngp_gradient[layer], ntk_gradient[layer] = d_nngp.T, d_ntk.T
        else:
            k, kdot = activation.dual_diag(nngp[layer - 1], scale=weight_var)
        nngp[layer], ntk[layer] = layer_values(k, kdot, ntk[layer - 1], bias_var)
    if eval_gradient:
        return Diagonals(nngp, ntk, nngp_gradient, ntk_gradient)
    return Diagonals(nngp, ntk)


# -- One tile -----------------------------------------------------------------


@dataclass(frozen=True)
class _Points:
    """What a tile needs of its row points (or of its column points).

    ``inputs`` are the points' rows of X; ``features[l - 1]`` the
    activation's per-point features of Σˡ(x, x) and ``variance_tangents[l - 1]``
    its tangents, of shape (2, n), for the hidden layers l = 1..L-1
    (``variance_tangents`` is None without gradients).
    """

    inputs: np.ndarray
    features: list
    variance_tangents: list = None

    def take(self, start, stop):
        """The points start:stop."""
        return _Points(
            self.inputs[start:stop],
            [take_points(features, start, stop) for features in self.features],
            None if self.variance_tangents is None
            else [d[:, start:stop] for d in self.variance_tangents],
        )


@dataclass(frozen=True)
class _TilePlan:
    """What every tile of one :func:`kernel_matrices` call computes."""

    depth: int
    activation: object
    weight_var: float
    bias_var: float
    want_ntk: bool
    all_depths: bool
    eval_gradient: bool


@dataclass
class _Workspace:
    """One thread's buffers, reused tile after tile.

    Flat arrays with room for the largest tile; :meth:`shaped` views them as
    one tile.  Their roles never change: ``nngp`` holds Σ of the tile and is
    overwritten layer by layer (the activation's dual writes σ_w² E[σσ] over
    the old Σ, which the layer update turns into the new Σ); ``ntk`` holds Θ;
    ``scratch`` are the activation's ``workspace_size`` buffers, where it
    returns Σ̇.  Fresh tile-sized arrays would cost page faults on every
    tile, as glibc hands the memory back and forth with the system
    (benchmarks/results/scale.md, "Tile size").
    """

    nngp: np.ndarray
    ntk: np.ndarray
    scratch: tuple

    @classmethod
    def allocate(cls, n_entries, n_scratch):
        return cls(np.empty(n_entries), np.empty(n_entries),
                   tuple(np.empty(n_entries) for _ in range(n_scratch)))

    def shaped(self, shape):
        """The same buffers as arrays of ``shape``."""
        size = shape[0] * shape[1]

        def view(buffer):
            return buffer[:size].reshape(shape)

        return _Workspace(view(self.nngp), view(self.ntk),
                          tuple(view(buffer) for buffer in self.scratch))


def _tile(destination, rows, cols, workspace, plan):
    """Run one tile through every layer, writing the kept depths to ``destination``.

    ``destination`` is a :class:`Kernels` of writable arrays of shape
    (n_kept, n_rows, n_cols) (a trailing axis of 2 for gradients);
    ``rows.inputs`` are already scaled by σ_w²/n0.
    """
    activation, weight_var, bias_var = plan.activation, plan.weight_var, plan.bias_var
    buffers = workspace.shaped((rows.inputs.shape[0], cols.inputs.shape[0]))
    nngp = np.matmul(rows.inputs, cols.inputs.T, out=buffers.nngp)
    nngp += bias_var
    # Θ¹ = Σ¹; Θ is tracked in a buffer of its own only if it is wanted.
    ntk = None
    if plan.want_ntk and plan.depth > 1:
        ntk = buffers.ntk
        np.copyto(ntk, nngp)
    d_nngp = d_ntk = None
    if plan.eval_gradient:
        d_nngp = first_layer_tangents(nngp, bias_var)
        d_ntk = None if ntk is None else d_nngp.copy()

    def keep(layer):
        index = layer if plan.all_depths else 0
        state = Kernels(nngp, nngp if ntk is None else ntk)
        if plan.eval_gradient:
            state.nngp_gradient = np.moveaxis(d_nngp, 0, -1)
            state.ntk_gradient = np.moveaxis(d_nngp if d_ntk is None else d_ntk, 0, -1)
        for name, target in destination.present():
            target[index] = getattr(state, name)

    if plan.all_depths or plan.depth == 1:
        keep(0)
    for layer in range(1, plan.depth):
        row_features, col_features = rows.features[layer - 1], cols.features[layer - 1]
        if plan.eval_gradient:
            # Tangents first: dual() below writes over the old Σ.
            dk, dkdot = activation.dual_tangents(
                row_features, col_features, nngp, rows.variance_tangents[layer - 1],
                cols.variance_tangents[layer - 1], d_nngp, scale=weight_var)
        k, kdot = activation.dual(row_features, col_features, nngp, scale=weight_var,
                                  workspace=buffers.scratch)
        if plan.eval_gradient:
            d_nngp, d_ntk = layer_tangents_in_place(k, kdot, dk, dkdot, ntk, d_ntk,
                                                    bias_var)
        nngp, ntk = layer_values_in_place(k, kdot, ntk, bias_var)
        if plan.all_depths or layer == plan.depth - 1:
            keep(layer)


def _block(destination, rows, cols, plan, tile_size, workspace):
    """Compute a block of rows against several tiles' worth of columns.

    The tiles run one after the other through ``workspace``.
    """
    # Overflow or an invalid operation means the values are not representable
    # (the duals are written so that nothing else causes them): raised here,
    # reported by kernel_matrices.  The errstate is per thread, hence here.
    with floating_point_checks():
        rows = replace(rows, inputs=rows.inputs * (plan.weight_var / rows.inputs.shape[1]))
        n_cols = cols.inputs.shape[0]
        for c0 in range(0, n_cols, tile_size):
            c1 = min(c0 + tile_size, n_cols)
            _tile(destination.map(lambda values: values[:, :, c0:c1]), rows,
                  cols.take(c0, c1), workspace, plan)


# -- Scheduling -----------------------------------------------------------------


def _tile_size(activation, tile_size):
    """The tile side: the caller's, else the activation's, else by workspace."""
    if tile_size is not None:
        return tile_size
    # Never dependent on eval_gradient: the same tiles give the same K.
    return activation.tile_size or (
        TILE_SIZE if activation.workspace_size > 0 else ALLOCATING_TILE_SIZE)


def _tasks(n_x, n_y, symmetric, tile_size, n_workers):
    """The tasks: ((r0, r1), (c0, c1)) row and column ranges of blocks.

    A task is a run of consecutive tiles along one row strip (for K(X, X),
    starting at the strip's diagonal tile), computed through one workspace:
    runs of TILES_PER_TASK, shorter if that left under four tasks per worker.
    """
    strips = [(r0, min(r0 + tile_size, n_x)) for r0 in range(0, n_x, tile_size)]
    n_tiles = sum(-(-(n_y - (r0 if symmetric else 0)) // tile_size) for r0, _ in strips)
    tiles_per_task = max(1, min(TILES_PER_TASK, n_tiles // (4 * n_workers)))
    span = tile_size * tiles_per_task
    return [
        (row_range, (c0, min(c0 + span, n_y)))
        for row_range in strips
        for c0 in range(row_range[0] if symmetric else 0, n_y, span)
    ]


def _schedule(outputs, rows, cols, plan, *, symmetric, tile_size, n_jobs):
    """Fill ``outputs`` (a :class:`Kernels` of (n_kept, n_x, n_y[, 2]) arrays).

    With a thread backend each task writes its block (and its mirror) into
    the outputs: the blocks are disjoint, and the copies run in parallel
    too.  Other backends (processes, Dask) return their blocks, which are
    written here; only a block's own points travel with its task (a closure
    over X and Y would ship them whole each time).
    """
    n_x, n_y = rows.inputs.shape[0], cols.inputs.shape[0]
    n_workers = effective_n_jobs(n_jobs)
    tasks = _tasks(n_x, n_y, symmetric, tile_size, n_workers)
    backend, _ = get_active_backend(prefer="threads")
    shared_memory = getattr(backend, "supports_sharedmem", False)
    # Each buffer holds the largest tile.
    workspace_shape = (min(tile_size, n_x) * min(tile_size, n_y),
                       plan.activation.workspace_size)
    idle_workspaces = queue.SimpleQueue()
    # Shape of each output without its (n_x, n_y) axes.
    block_shapes = outputs.map(lambda values: values.shape[:1] + values.shape[3:])

    def task(row_range, col_range):
        (r0, r1), (c0, c1) = row_range, col_range
        arguments = (rows.take(r0, r1), cols.take(c0, c1), plan, tile_size)
        if shared_memory:
            return delayed(_block_into)(outputs, symmetric, idle_workspaces,
                                        workspace_shape, row_range, col_range,
                                        *arguments)
        return delayed(_new_block)(block_shapes, workspace_shape, *arguments)

    # Multi-threaded BLAS on tile-sized products costs more than it gains, and
    # its idle threads spin on the cores the tile arithmetic needs: parallelism
    # comes from n_jobs over blocks instead (benchmarks/results/scale.md,
    # "n_jobs").
    with single_threaded_blas(), Parallel(n_jobs=n_jobs, prefer="threads") as parallel:
        if shared_memory:
            parallel(task(*ranges) for ranges in tasks)
            return
        # Sent in batches of a few per worker, so that finished blocks not yet
        # written out cannot pile up.
        batch_size = 4 * n_workers
        for start in range(0, len(tasks), batch_size):
            batch = tasks[start:start + batch_size]
            blocks = parallel(task(*ranges) for ranges in batch)
            for (row_range, col_range), block in zip(batch, blocks):
                (r0, r1), (c0, c1) = row_range, col_range
                for name, values in block.present():
                    getattr(outputs, name)[:, r0:r1, c0:c1] = values
                if symmetric:
                    _mirror(outputs, row_range, col_range)


def _block_into(outputs, symmetric, idle_workspaces, workspace_shape, row_range,
                col_range, *arguments):
    """Compute a block straight into the shared outputs (thread backends).

    ``idle_workspaces`` is a queue of workspaces not in use, so that each
    thread allocates one at most.
    """
    (r0, r1), (c0, c1) = row_range, col_range
    try:
        workspace = idle_workspaces.get_nowait()
    except queue.Empty:
        workspace = _Workspace.allocate(*workspace_shape)
    _block(outputs.map(lambda values: values[:, r0:r1, c0:c1]), *arguments,
           workspace=workspace)
    idle_workspaces.put(workspace)
    if symmetric:
        _mirror(outputs, row_range, col_range)


def _new_block(block_shapes, workspace_shape, rows, cols, *arguments):
    """Compute a block into new arrays and return them (other backends)."""
    n_rows, n_cols = rows.inputs.shape[0], cols.inputs.shape[0]
    block = block_shapes.map(
        lambda shape: np.empty(shape[:1] + (n_rows, n_cols) + shape[1:]))
    _block(block, rows, cols, *arguments, workspace=_Workspace.allocate(*workspace_shape))
    return block


def _mirror(outputs, row_range, col_range):
    """For K(X, X), copy the block at (rows, cols) to (cols, rows), transposed."""
    (r0, r1), (c0, c1) = row_range, col_range
    for _, values in outputs.present():
        start = c0
        if c0 == r0:
            # A block starting on the diagonal computed that tile whole: keep
            # its upper triangle, so that the result is exactly symmetric.
            square = values[:, r0:r1, r0:r1]
            lower = np.tril_indices(r1 - r0, -1)
            square[:, lower[0], lower[1]] = square[:, lower[1], lower[0]]
            start = r1
        values[:, start:c1, r0:r1] = np.swapaxes(values[:, r0:r1, start:c1], 1, 2)


def _patch_diagonal(outputs, diagonals, layers):
    """Copy Σ and Θ of every point (and their tangents) onto K(X, X)'s diagonal."""
    for name, values in outputs.present():
        source = getattr(diagonals, name)
        n = values.shape[1]
        for index, layer in enumerate(layers):
            flat = values[index].reshape(n * n, -1)
            flat[:: n + 1] = source[layer].reshape(n, -1)


# -- The Gram matrices ------------------------------------------------------------


def kernel_matrices(
    X, Y=None, *, depth, activation, beta, weight_std, kernel="ntk",
    all_depths=False, eval_gradient=False, n_jobs=None, tile_size=None,
):
    """NNGP and/or NTK Gram matrices of X against Y (or X against itself).

    Parameters
    ----------
    X : ndarray of shape (n_x, n_features)
    Y : ndarray of shape (n_y, n_features), default=None
        None means Y = X; then only tiles on or above the diagonal are
        computed and the diagonal equals :func:`diagonal` exactly.
    depth : int
        Number of dense layers L >= 1.
    activation : str, callable or Activation
    beta, weight_std : float
        Bias and weight standard deviations.
    kernel : {"ntk", "nngp", "both"}
        Which matrices to return.
    all_depths : bool
        Return every depth 1..L (leading axis of length L) from the same pass.
    eval_gradient : bool
        Also return derivatives with respect to (log β, log σ_w).
    n_jobs : int, default=None
        Number of joblib workers over tiles (threads by default; numpy
        releases the GIL in the tile arithmetic).
    tile_size : int, default=None
        Side of the square tiles; None means the activation's own
        ``tile_size`` if it has one, else TILE_SIZE, or ALLOCATING_TILE_SIZE
        for an activation that does not work in place.

    Returns
    -------
    kernels : Kernels

    Raises
    ------
    ValueError
        If ``kernel`` is not one of KERNEL_CHOICES, or if the values are not
        representable in float64 (they overflow, or their scale underflows),
        naming the input scale.
    """
    if not isinstance(kernel, str) or kernel not in KERNEL_CHOICES:
        raise ValueError(
            f"kernel must be one of {sorted(KERNEL_CHOICES)}, got {kernel!r}.")
    activation = get_activation(activation)
    arrays = (X,) if Y is None else (X, Y)
    exponent = _input_exponent(activation, arrays, beta, weight_std)
    options = dict(depth=depth, activation=activation, weight_std=weight_std,
                   kernel=kernel, all_depths=all_depths, eval_gradient=eval_gradient,
                   n_jobs=n_jobs, tile_size=tile_size)
    with checked_range("The kernel values", arrays, beta, weight_std):
        if exponent:
            result, diagonals = _kernel_matrices(
                np.ldexp(X, -exponent), None if Y is None else np.ldexp(Y, -exponent),
                beta=np.ldexp(beta, -exponent), **options,
            )
            _rescale(vars(result).values(), 2 * exponent)
            for diagonal_values in diagonals:
                _rescale(vars(diagonal_values).values(), 2 * exponent)
        else:
            result, diagonals = _kernel_matrices(X, Y, beta=beta, **options)
    positive = bool(beta) or max_abs(*arrays) > 0
    layers = slice(None) if all_depths else slice(-1, None)
    for diagonal_values in diagonals:
        _check_underflow(
            [*diagonal_values.nngp[layers], *diagonal_values.ntk[layers]],
            diagonal_values.nngp[0], positive, arrays, beta, weight_std,
        )
    return result


def _points(activation, inputs, diagonals, eval_gradient):
    """A :class:`_Points` for each point set, from its :class:`Diagonals`.

    The features of all point sets are prepared together, layer by layer
    (the numerical activations share one series per layer among them).
    """
    depth = diagonals[0].nngp.shape[0]
    by_layer = [activation.prepare([d.nngp[layer] for d in diagonals], eval_gradient)
                for layer in range(depth - 1)]
    return [
        _Points(
            points, [features[index] for features in by_layer],
            [d.nngp_gradient[layer].T for layer in range(depth - 1)]
            if eval_gradient else None,
        )
        for index, (points, d) in enumerate(zip(inputs, diagonals))
    ]


def _kernel_matrices(
    X, Y, *, depth, activation, beta, weight_std, kernel, all_depths,
    eval_gradient, n_jobs, tile_size,
):
    """:func:`kernel_matrices` at the scale given, without the range checks.

    Returns the Kernels and the Diagonals of X (and of Y).
    """
    symmetric = Y is None
    params = dict(depth=depth, activation=activation, beta=beta, weight_std=weight_std,
                  eval_gradient=eval_gradient)
    diagonals = [_diagonal(X, **params)]
    if not symmetric:
        diagonals.append(_diagonal(Y, **params))
    inputs = [X] if symmetric else [X, Y]
    points = _points(activation, inputs, diagonals, eval_gradient)
    rows, cols = points[0], points[-1]

    want_nngp, want_ntk = KERNEL_CHOICES[kernel]
    n_kept = depth if all_depths else 1
    shape = (n_kept, X.shape[0], (X if symmetric else Y).shape[0])
    gradient_shape = shape + (2,) if eval_gradient else None
    outputs = Kernels(
        nngp=np.empty(shape) if want_nngp else None,
        ntk=np.empty(shape) if want_ntk else None,
        nngp_gradient=np.empty(gradient_shape) if want_nngp and eval_gradient else None,
        ntk_gradient=np.empty(gradient_shape) if want_ntk and eval_gradient else None,
    )
    plan = _TilePlan(depth=depth, activation=activation,
                     weight_var=float(weight_std) ** 2, bias_var=float(beta) ** 2,
                     want_ntk=want_ntk, all_depths=all_depths,
                     eval_gradient=eval_gradient)
    _schedule(outputs, rows, cols, plan, symmetric=symmetric,
              tile_size=_tile_size(activation, tile_size), n_jobs=n_jobs)
    if symmetric:
        # The diagonal is exactly diagonal(X), so K(X)[i, i] == diag(X)[i].
        _patch_diagonal(outputs, diagonals[0],
                        range(depth) if all_depths else [depth - 1])
    if not all_depths:
        outputs = outputs.map(lambda values: values[0])
    return outputs, diagonals
