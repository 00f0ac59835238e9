"""The NNGP/NTK recursion of fully-connected networks: the one place it lives.

For a network of ``depth`` L dense layers in NTK parametrization,

    Σ¹(x, x')   = σ_w² xᵀx'/n0 + β²,            Θ¹ = Σ¹
    Σˡ⁺¹        = σ_w² E[σ(u)σ(v)] + β²,        Σ̇ˡ⁺¹ = σ_w² E[σ'(u)σ'(v)]
    Θˡ⁺¹        = Θˡ Σ̇ˡ⁺¹ + Σˡ⁺¹

with (u, v) Gaussian of covariance Σˡ.  The NNGP kernel is Σᴸ and the NTK is
Θᴸ.  The Gaussian expectations come from the activation registry
(:mod:`sklearn_ntk._activations`).

Layout of the computation
-------------------------
The variances Σˡ(x, x) of every point are computed first by an O(n·L)
recursion of their own (:func:`diagonal`).  The matrix is then cut into
square tiles; each tile runs through all L layers before the next one starts,
so beyond the output only O(tile) memory is used.  For K(X, X) only tiles on
or above the diagonal are computed and mirrored, and the diagonal is copied
from :func:`diagonal` so that ``K(X)[i, i] == diag(X)[i]`` bit for bit.
Runs of tiles along a row strip are independent tasks for
:class:`joblib.Parallel`, so ``n_jobs`` and any joblib backend (threads,
processes, Dask) apply; each thread computes through one reused workspace.

Gradients are carried forward in the same pass (forward-mode
differentiation) with respect to θ = (log β, log σ_w), the hyperparameter
order of the kernels.
"""

import functools
import queue
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import get_active_backend
from threadpoolctl import ThreadpoolController

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
#: threads, every numpy call on a tile releases and retakes the GIL, and a
#: contended hand-over costs ~10 µs: 320-row tiles make the calls long enough
#: for n_jobs=2 to scale where 192-row tiles did not; one thread is as fast
#: with either (benchmarks/results/scale.md, "Tile size").
TILE_SIZE = 320

#: Side of the tiles when the activation's dual allocates its temporaries
#: per tile (gelu's; the tile size never depends on eval_gradient, so that K
#: is the same bit for bit with and without gradients).  Larger tiles push them
#: past glibc's thresholds for handing memory back to the system, and every
#: tile then faults it in again: gelu at n = 4000 ran 2.7x slower with
#: 160-row tiles than with 128 (234k minor page faults instead of 600).
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
    """:func:`diagonal` at the scale given, without checks."""
    n_samples, n_features = X.shape
    weight_var, bias_var = weight_std**2, beta**2
    nngp = np.empty((depth, n_samples))
    ntk = np.empty((depth, n_samples))
    variance = weight_var * _mean_squares(X) + bias_var
    nngp[0] = ntk[0] = variance
    if eval_gradient:
        nngp_gradient = np.empty((depth, n_samples, 2))
        ntk_gradient = np.empty((depth, n_samples, 2))
        d_variance = np.stack([np.full(n_samples, 2.0 * bias_var), 2.0 * (variance - bias_var)])
        d_ntk = d_variance.copy()
        nngp_gradient[0] = ntk_gradient[0] = d_variance.T
    for layer in range(1, depth):
        if eval_gradient:
            k, kdot, dk, dkdot = activation.dual_diag_jvp(variance, d_variance)
        else:
            k, kdot = activation.dual_diag(variance)
        new_variance = weight_var * k + bias_var
        slope = weight_var * kdot
        if eval_gradient:
            d_new_variance = weight_var * dk
            d_new_variance[0] += 2.0 * bias_var
            d_new_variance[1] += 2.0 * weight_var * k
            d_slope = weight_var * dkdot
            d_slope[1] += 2.0 * slope
            d_ntk = d_ntk * slope + ntk[layer - 1] * d_slope + d_new_variance
            d_variance = d_new_variance
            nngp_gradient[layer] = d_variance.T
            ntk_gradient[layer] = d_ntk.T
        ntk[layer] = ntk[layer - 1] * slope + new_variance
        nngp[layer] = variance = new_variance
    if eval_gradient:
        return Diagonals(nngp, ntk, nngp_gradient, ntk_gradient)
    return Diagonals(nngp, ntk)


def _tile(
    destination, X_rows, Y_cols, rows_by_layer, cols_by_layer, d_rows_by_layer,
    d_cols_by_layer, workspace, *, depth, activation, weight_var, bias_var,
    want_ntk, all_depths, eval_gradient,
):
    """Run one tile through every layer, writing the kept depths to ``destination``.

    ``destination`` maps each requested key ("nngp", "ntk", "nngp_gradient",
    "ntk_gradient") to a writable array of shape (n_kept, n_rows, n_cols) (with
    a trailing axis of 2 for gradients).  ``X_rows`` is already scaled by
    σ_w²/n0.  ``rows_by_layer[l]`` are the activation's per-point features of
    the row points at layer l + 1 and ``d_rows_by_layer[l]`` the tangents of
    their variances, shape (2, n_rows).  ``workspace`` is flat scratch
    buffers of at least n_rows·n_cols entries, reused across tiles: two for
    Σ and Θ, then the activation's :attr:`~Activation.workspace_size`.
    """
    shape = (X_rows.shape[0], Y_cols.shape[0])
    scratch = [buffer[: shape[0] * shape[1]].reshape(shape) for buffer in workspace]
    nngp = np.matmul(X_rows, Y_cols.T, out=scratch[0])
    nngp += bias_var
    ntk = nngp
    if want_ntk and depth > 1:
        ntk = scratch[1]
        np.copyto(ntk, nngp)
    if eval_gradient:
        d_nngp = np.empty((2,) + shape)
        d_nngp[0] = 2.0 * bias_var
        np.subtract(nngp, bias_var, out=d_nngp[1])
        d_nngp[1] *= 2.0
        d_ntk = d_nngp.copy() if want_ntk and depth > 1 else d_nngp

    def keep(layer):
        index = layer if all_depths else 0
        state = {"nngp": nngp, "ntk": ntk}
        if eval_gradient:
            state.update(nngp_gradient=np.moveaxis(d_nngp, 0, -1),
                         ntk_gradient=np.moveaxis(d_ntk, 0, -1))
        for key, target in destination.items():
            target[index] = state[key]

    if all_depths or depth == 1:
        keep(0)
    for layer in range(1, depth):
        rows, cols = rows_by_layer[layer - 1], cols_by_layer[layer - 1]
        if eval_gradient:
            # Tangents first: dual() below overwrites the old Σ in place.
            dk, dkdot = activation.dual_tangents(
                rows, cols, nngp,
                d_rows_by_layer[layer - 1], d_cols_by_layer[layer - 1], d_nngp,
            )
        # The values take the same path with and without eval_gradient, so K
        # is the same bit for bit.  k = σ_w² E[σσ] comes back in nngp's own
        # buffer (the new Σ replaces the old) and kdot = σ_w² E[σ'σ'] = Σ̇ in
        # a workspace buffer.
        k, slope = activation.dual(rows, cols, nngp, scratch[2:] or None,
                                   scale=weight_var)
        if eval_gradient:
            # d(σ_w² E) = σ_w² dE, plus 2 σ_w² E along log σ_w.
            d_slope = dkdot
            d_slope *= weight_var
            d_slope[1] += 2.0 * slope
            d_nngp = dk
            d_nngp *= weight_var
            d_nngp[0] += 2.0 * bias_var
            d_nngp[1] += 2.0 * k
            if want_ntk:
                # Θ' = Θ Σ̇ + Σ', so dΘ' = dΘ Σ̇ + Θ dΣ̇ + dΣ' (Θ still the old one).
                d_ntk *= slope
                d_ntk += ntk[None] * d_slope
                d_ntk += d_nngp
        nngp = k
        nngp += bias_var
        if want_ntk:
            ntk *= slope
            ntk += nngp
        if all_depths or layer == depth - 1:
            keep(layer)


def _block(
    destination, X_rows, Y_cols, rows_by_layer, cols_by_layer, d_rows_by_layer,
    d_cols_by_layer, *, tile_size, workspace_shape, weight_var, workspace=None,
    **options,
):
    """Compute a block of rows against several tiles' worth of columns.

    The tiles run one after the other through one workspace, which is
    returned for the next block; if None, a new one is made, with
    ``workspace_shape`` = (number of buffers, entries of the largest tile).
    Fresh tile-sized arrays cost page faults on every tile, as glibc hands
    the memory back and forth with the system.
    """
    n_cols = Y_cols.shape[0]
    if workspace is None:
        n_buffers, n_entries = workspace_shape
        workspace = [np.empty(n_entries) for _ in range(n_buffers)]
    # Overflow or an invalid operation means the values are not representable
    # (the duals are written so that nothing else causes them): raised here,
    # reported by kernel_matrices.  The errstate is per thread, hence here.
    with floating_point_checks():
        X_rows = X_rows * (weight_var / X_rows.shape[1])
        for c0 in range(0, n_cols, tile_size):
            c1 = min(c0 + tile_size, n_cols)
            _tile(
                {key: values[:, :, c0:c1] for key, values in destination.items()},
                X_rows, Y_cols[c0:c1], rows_by_layer,
                [_take(features, c0, c1) for features in cols_by_layer],
                d_rows_by_layer,
                [None if d is None else d[:, c0:c1] for d in d_cols_by_layer],
                workspace, weight_var=weight_var, **options,
            )
    return workspace


def _take(features, start, stop):
    """The per-point features of points start:stop."""
    return tuple(part[start:stop] for part in features)


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
        If the values are not representable in float64 (they overflow, or
        their scale underflows), naming the input scale.
    """
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


def _kernel_matrices(
    X, Y, *, depth, activation, beta, weight_std, kernel, all_depths,
    eval_gradient, n_jobs, tile_size,
):
    """:func:`kernel_matrices` at the scale given, without the range checks.

    Returns the Kernels and the Diagonals of X (and of Y).
    """
    in_place = activation.workspace_size > 0
    if tile_size is None:
        # Not dependent on eval_gradient: the same tiles give the same K.
        tile_size = activation.tile_size or (
            TILE_SIZE if in_place else ALLOCATING_TILE_SIZE)
    symmetric = Y is None
    if symmetric:
        Y = X
    want_nngp = kernel in ("nngp", "both")
    want_ntk = kernel in ("ntk", "both")
    weight_var, bias_var = float(weight_std) ** 2, float(beta) ** 2
    params = dict(depth=depth, activation=activation, beta=beta, weight_std=weight_std,
                  eval_gradient=eval_gradient)
    diag_x = _diagonal(X, **params)
    diag_y = diag_x if symmetric else _diagonal(Y, **params)

    # Per-point features of each layer's input variances, for rows and columns.
    rows_by_layer, cols_by_layer = [], []
    for layer in range(depth - 1):
        if symmetric:
            (features,) = activation.prepare([diag_x.nngp[layer]], eval_gradient)
            rows_by_layer.append(features)
            cols_by_layer.append(features)
        else:
            rows, cols = activation.prepare(
                [diag_x.nngp[layer], diag_y.nngp[layer]], eval_gradient
            )
            rows_by_layer.append(rows)
            cols_by_layer.append(cols)
    if eval_gradient:
        d_x = [diag_x.nngp_gradient[layer].T for layer in range(depth - 1)]
        d_y = [diag_y.nngp_gradient[layer].T for layer in range(depth - 1)]
    else:
        d_x = d_y = [None] * (depth - 1)

    n_x, n_y = X.shape[0], Y.shape[0]
    n_kept = depth if all_depths else 1
    outputs = {}
    names = [name for name, wanted in (("nngp", want_nngp), ("ntk", want_ntk)) if wanted]
    for name in names:
        outputs[name] = np.empty((n_kept, n_x, n_y))
        if eval_gradient:
            outputs[name + "_gradient"] = np.empty((n_kept, n_x, n_y, 2))

    # A task is a run of consecutive tiles along one row strip (for K(X, X),
    # starting at the strip's diagonal tile), computed through one workspace:
    # runs of TILES_PER_TASK, shorter if that left under four tasks per worker.
    n_workers = effective_n_jobs(n_jobs)
    strips = [(r0, min(r0 + tile_size, n_x)) for r0 in range(0, n_x, tile_size)]
    n_tiles = sum(-(-(n_y - (r0 if symmetric else 0)) // tile_size) for r0, _ in strips)
    tiles_per_task = max(1, min(TILES_PER_TASK, n_tiles // (4 * n_workers)))
    span = tile_size * tiles_per_task
    tasks = [
        (rows, (c0, min(c0 + span, n_y)))
        for rows in strips
        for c0 in range(rows[0] if symmetric else 0, n_y, span)
    ]

    backend, _ = get_active_backend(prefer="threads")
    shared_memory = getattr(backend, "supports_sharedmem", False)
    workspaces = queue.SimpleQueue()
    # Σ and Θ, then the activation's scratch if it works in place; each
    # buffer holds the largest tile.
    workspace_shape = (
        2 + (activation.workspace_size if in_place else 0),
        min(tile_size, n_x) * min(tile_size, n_y),
    )
    # Shape of each output without its (n_x, n_y) axes.
    block_shapes = {
        key: values.shape[:1] + values.shape[3:] for key, values in outputs.items()
    }

    def task(rows, cols):
        # Only the block's own slices travel with a task: with a process or
        # Dask backend, a closure over X and Y would ship them whole each time.
        (r0, r1), (c0, c1) = rows, cols
        arguments = (
            X[r0:r1], Y[c0:c1],
            [_take(features, r0, r1) for features in rows_by_layer],
            [_take(features, c0, c1) for features in cols_by_layer],
            [None if d is None else d[:, r0:r1] for d in d_x],
            [None if d is None else d[:, c0:c1] for d in d_y],
        )
        options = dict(
            depth=depth, activation=activation, weight_var=weight_var,
            bias_var=bias_var, want_ntk=want_ntk, all_depths=all_depths,
            eval_gradient=eval_gradient, tile_size=tile_size,
            workspace_shape=workspace_shape,
        )
        if shared_memory:
            # Threads write their own block (and its mirror) into the output:
            # the blocks are disjoint, and the copies run in parallel too.
            return delayed(_block_into)(outputs, symmetric, workspaces, rows, cols,
                                        *arguments, **options)
        return delayed(_new_block)(block_shapes, r1 - r0, c1 - c0, *arguments,
                                   **options)

    # Multi-threaded BLAS on tile-sized products costs more than it gains, and
    # its idle threads spin on the cores the tile arithmetic needs: parallelism
    # comes from n_jobs over blocks instead.
    with single_threaded_blas(), Parallel(
        n_jobs=n_jobs, prefer="threads"
    ) as parallel:
        if shared_memory:
            parallel(task(rows, cols) for rows, cols in tasks)
        else:
            # Other backends return their blocks, sent in batches of a few per
            # worker so that finished blocks not yet written out cannot pile up.
            batch_size = 4 * n_workers
            for start in range(0, len(tasks), batch_size):
                batch = tasks[start:start + batch_size]
                results = parallel(task(rows, cols) for rows, cols in batch)
                for (rows, cols), block in zip(batch, results):
                    (r0, r1), (c0, c1) = rows, cols
                    for key, values in block.items():
                        outputs[key][:, r0:r1, c0:c1] = values
                    if symmetric:
                        _mirror(outputs, rows, cols)

    if symmetric:
        # The diagonal is exactly diagonal(X), so K(X)[i, i] == diag(X)[i].
        layers = range(depth) if all_depths else [depth - 1]
        for key, values in outputs.items():
            source = getattr(diag_x, key)
            for index, layer in enumerate(layers):
                flat = values[index].reshape(n_x * n_x, -1)
                flat[:: n_x + 1] = source[layer].reshape(n_x, -1)

    result = Kernels()
    for key, values in outputs.items():
        setattr(result, key, values if all_depths else values[0])
    return result, [diag_x] if symmetric else [diag_x, diag_y]


def _block_into(outputs, symmetric, workspaces, rows, cols, *arguments, **options):
    """Compute a block straight into the shared outputs (thread backends).

    ``workspaces`` is a queue of idle workspaces, so that each thread
    allocates one at most.
    """
    (r0, r1), (c0, c1) = rows, cols
    try:
        workspace = workspaces.get_nowait()
    except queue.Empty:
        workspace = None
    workspaces.put(_block(
        {key: values[:, r0:r1, c0:c1] for key, values in outputs.items()},
        *arguments, workspace=workspace, **options,
    ))
    if symmetric:
        _mirror(outputs, rows, cols)


def _new_block(block_shapes, n_rows, n_cols, *arguments, **options):
    """Compute a block into new arrays and return them (other backends)."""
    block = {
        key: np.empty(shape[:1] + (n_rows, n_cols) + shape[1:])
        for key, shape in block_shapes.items()
    }
    _block(block, *arguments, **options)
    return block


def _mirror(outputs, rows, cols):
    """For K(X, X), copy the block at (rows, cols) to (cols, rows), transposed."""
    (r0, r1), (c0, c1) = rows, cols
    for values in outputs.values():
        start = c0
        if c0 == r0:
            # A block starting on the diagonal computed that tile whole: keep
            # its upper triangle, so that the result is exactly symmetric.
            square = values[:, r0:r1, r0:r1]
            lower = np.tril_indices(r1 - r0, -1)
            square[:, lower[0], lower[1]] = square[:, lower[1], lower[0]]
            start = r1
        values[:, start:c1, r0:r1] = np.swapaxes(values[:, r0:r1, start:c1], 1, 2)
