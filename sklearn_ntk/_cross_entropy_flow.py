"""Kernel gradient flow on the cross-entropy: the stiff ODE and its integrator.

In the infinite-width limit a network trained by gradient flow follows kernel
gradient descent with a constant kernel for any cost (Jacot et al. 2018).  For
the mean cross-entropy C(f) = (1/N) Σᵢ ℓ(f(xᵢ), yᵢ) over N training points
the dynamics of the outputs are closed but no longer linear.  With
K_α = K + αI, the network's output written f_t(x) = K(x, X) a_t (and
f_t(X) = K_α a_t on the training points), one-hot targets Y (N, C) and the
link p (the logistic function of one output for two classes, the softmax
over C outputs otherwise) the dual coefficients follow

    da/dt = −(η/N) (p(K_α a) − Y),        a(0) = 0.

Only the time scale c = η t / N enters: da/dc = −(p(K_α a) − Y).  The
convention a(0) = 0 starts the flow from a zero output: a real network
whose last layer is initialised at zero, or whose initial (random) output
is subtracted.  The flow is not linear in the initial output, so this is
not the average over random initialisations that the squared loss gives;
it is the training of the centred network.  At c = 0 the probabilities are
uniform.  The flow has no limit as c → ∞ on data the kernel separates (the
outputs grow like log c), so only finite times are integrated.

With K_α = V diag(λ) Vᵀ (the eigendecomposition the squared loss already
uses, see :mod:`sklearn_ntk._gradient_flow`) the state is b = Vᵀ a, one
column per output:

    db/dc = Vᵀ Y − Vᵀ p(V diag(λ) b),

and its Jacobian is −Vᵀ D V diag(λ), with D the link's derivative (per point
p(1 − p), or the softmax's C × C block diag(p) − p pᵀ).  The eigenvalues of
K span many decades, so the problem is stiff; its Jacobian is dense in this
basis and changes with the state.  The integrator is the Rosenbrock
W-method ROS34PW2 of Rang & Angermann (2005; L-stable, 4 stages, order 3
with an embedded order-2 solution) with the Jacobian replaced by its
diagonal T in this basis, −λⱼ Σᵢ Vᵢⱼ² pᵢₖ(1 − pᵢₖ) for eigenvector j and
output k, refreshed at every step (one product with V∘V).  A W-method keeps
its order for *any* such matrix, and a diagonal T makes every linear solve a
division: a step costs four evaluations of the right-hand side (two products
with V, of N²·C flops each), one product with V∘V and no N×N or
(N·C)×(N·C) factorisation.  The price is accuracy per step where T differs
from the Jacobian: measured against the same method with the exact
Jacobian (dense solves, on 40 points), as many steps early in training
and about four times as many late, when a few unresolved points dominate D.

Accuracy: each step's local error e (of b), estimated by the embedded
solution, is kept below ``tolerance`` in the root-mean-square over the N·C
coordinates of √λⱼ eⱼₖ, relative to the root-mean-square √(trace K / N) of
√K(xᵢ, xᵢ).  Without the mean, Σⱼ λⱼ ‖eⱼ‖² is the squared norm of the
output error in the kernel's reproducing-kernel Hilbert space, which bounds
the output error at *every* point, training or test: |δf(x)| ≤ √K(x, x) ‖e‖
(a worst case √(N·C) times the controlled mean).  The probabilities'
derivative is at most 1/2 in the maximum norm.

The trajectory is integrated in segments [0, u], [u, 2u], [2u, 4u], … with
u = 1/λ_max: fixed edges, so the solution at a time does not depend on
which other times were asked for, and a search over t can cache the
segments and integrate each once.  Inside a segment, times are evaluated
by cubic Hermite interpolation between steps (of the method's order).
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, softmax

#: Local error tolerance per step, in units of the root-mean-square output
#: scale √(trace K / N) (see the module docstring).  The global error of the
#: probabilities came out at about the tolerance against a Radau solution
#: at rtol 1e-11 (1e-6 gave errors up to 1e-6 on 40 points, 1e-7 up to
#: 1.5e-7; tests/test_cross_entropy_flow.py checks 1e-6); the number of
#: steps grows like its inverse cube root.
TOLERANCE = 1e-7

# ROS34PW2 (Rang & Angermann 2005): k_i = (I − hγT)⁻¹ [h F(b + Σ_j A_ij k_j)
# + hT Σ_j Γ_ij k_j], b_new = b + Σ_i B_i k_i, error = Σ_i (B_i − B̂_i) k_i.
_GAMMA = 0.435866521508459
_A = np.array([
    [0.0, 0.0, 0.0, 0.0],
    [0.87173304301691801, 0.0, 0.0, 0.0],
    [0.84457060015369423, -0.11299064236484185, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
])
_G = np.array([
    [0.0, 0.0, 0.0, 0.0],
    [-0.87173304301691801, 0.0, 0.0, 0.0],
    [-0.90338057013044082, 0.054180672388095326, 0.0, 0.0],
    [0.24212380706095346, -1.2232505839045147, 0.54526025533510214, 0.0],
])
_B = np.array([0.24212380706095346, -1.2232505839045147, 1.5452602553351020,
               0.435866521508459])
_B_EMBEDDED = np.array([0.37810903145819369, -0.096042292212423178, 0.5,
                        0.2179332607542295])

#: Step-size control: the embedded solution is of order 2, so the local
#: error estimate scales as h³.
_SAFETY, _SHRINK, _GROW = 0.9, 0.2, 5.0


def link_probabilities(outputs):
    """Probabilities of the link: logistic for one column, softmax otherwise.

    Returns the probabilities of the outputs' columns (one column: the
    positive class only).
    """
    if outputs.shape[1] == 1:
        return expit(outputs)
    return softmax(outputs, axis=1)


def class_probabilities(outputs):
    """Probabilities of every class, shape (n, n_classes).

    One output (two classes) gives two columns.
    """
    probabilities = link_probabilities(outputs)
    if outputs.shape[1] == 1:
        # expit(-f) rather than 1 - expit(f): exact for large positive f.
        return np.hstack([expit(-outputs), probabilities])
    return probabilities


@dataclass
class Segment:
    """The trajectory over one segment of time scales, with its dense output.

    ``times`` (n + 1,) are the step edges, ``states`` and ``slopes``
    (n + 1, N, C) the state b and db/dc there; ``next_step`` the step size
    the controller proposes after the segment, ``jacobian`` the diagonal of
    the approximate Jacobian at its end (see
    :meth:`CrossEntropyFlow.jacobian_diagonal`) and ``n_rejected`` the
    number of steps the error control rejected.
    """

    times: np.ndarray
    states: np.ndarray
    slopes: np.ndarray
    next_step: float
    jacobian: np.ndarray
    n_rejected: int

    def end(self):
        """The segment reduced to its end: all that the next segment needs."""
        return Segment(self.times[-1:], self.states[-1:], self.slopes[-1:],
                       self.next_step, self.jacobian, self.n_rejected)

    def at(self, time):
        """b at ``time`` (inside the segment), by cubic Hermite interpolation."""
        step = int(np.clip(np.searchsorted(self.times, time, side="right") - 1,
                           0, self.times.size - 2))
        start, end = self.times[step], self.times[step + 1]
        h = end - start
        s = (time - start) / h
        if s >= 1.0:
            return self.states[step + 1].copy()
        h00 = (1 + 2 * s) * (1 - s) ** 2
        h10 = s * (1 - s) ** 2
        h01 = s * s * (3 - 2 * s)
        h11 = s * s * (s - 1)
        return (h00 * self.states[step] + h01 * self.states[step + 1]
                + h * (h10 * self.slopes[step] + h11 * self.slopes[step + 1]))


class CrossEntropyFlow:
    """The flow db/dc = VᵀY − Vᵀp(V diag(λ) b) in the eigenbasis of K_α.

    Parameters
    ----------
    eigenvalues : ndarray of shape (N,)
        Eigenvalues λ of K_α (clipped at 0), in the factorisation's units.
    eigenvectors : ndarray of shape (N, N)
        V.
    targets : ndarray of shape (N, C)
        One-hot targets (one column of 0/1 for two classes and the logistic
        link).
    tolerance : float, default=TOLERANCE
        Local error per step, relative to the root-mean-square √K(xᵢ, xᵢ).
    """

    def __init__(self, eigenvalues, eigenvectors, targets, tolerance=TOLERANCE):
        self.eigenvalues = eigenvalues
        self.eigenvectors = eigenvectors
        self.projected_targets = eigenvectors.T @ targets
        n_train = max(eigenvalues.size, 1)
        # The root-mean-square of √λ·e at most tolerance · √(trace K / N):
        # output errors of the order of the tolerance at a point of average
        # kernel diagonal.
        self.error_bound = tolerance * math.sqrt(max(eigenvalues.sum() / n_train,
                                                     np.finfo(float).tiny))
        largest = eigenvalues[-1] if eigenvalues.size else 0.0
        self.unit = 1.0 / largest if largest > 0 else 1.0
        self._sqrt_eigenvalues = np.sqrt(eigenvalues)[:, None]
        self._squared_eigenvectors = None

    def __getstate__(self):
        # V∘V is as large as V and cheap to recompute: not pickled.
        return {**self.__dict__, "_squared_eigenvectors": None}

    def segment_edges(self, index):
        """(start, end) time scales of segment ``index``: [0, u], then doubling."""
        if index == 0:
            return 0.0, self.unit
        return math.ldexp(self.unit, index - 1), math.ldexp(self.unit, index)

    def segment_index(self, time_scale):
        """The segment holding ``time_scale`` (its end when on an edge)."""
        if time_scale <= self.unit:
            return 0
        return max(1, math.ceil(math.log2(time_scale / self.unit)))

    def initial_state(self):
        """b(0) = 0, its slope VᵀY − Vᵀp(0) and the Jacobian diagonal there."""
        state = np.zeros_like(self.projected_targets)
        slope, probabilities = self.slope(state)
        return state, slope, self.jacobian_diagonal(probabilities)

    def slope(self, state):
        """db/dc at ``state``, and the probabilities there (N, C)."""
        V = self.eigenvectors
        probabilities = link_probabilities(V @ (self.eigenvalues[:, None] * state))
        return self.projected_targets - V.T @ probabilities, probabilities

    def jacobian_diagonal(self, probabilities):
        """The diagonal of the Jacobian's approximation, −T, shape (N, C).

        diag(Vᵀ D V)·λ per output: the Jacobian −Vᵀ D V diag(λ) restricted
        to its diagonal (for the softmax, the diagonal of each point's
        block, p(1 − p)).  It costs one product with V∘V, once per step.
        """
        if self._squared_eigenvectors is None:
            self._squared_eigenvectors = self.eigenvectors**2
        derivative = probabilities * (1.0 - probabilities)
        curvature = self._squared_eigenvectors.T @ derivative
        return curvature * self.eigenvalues[:, None]

    def _error_norm(self, error):
        """Root-mean-square over the N·C coordinates of the RKHS-weighted error."""
        return float(np.linalg.norm(self._sqrt_eigenvalues * error)
                     / math.sqrt(error.size))

    def integrate(self, start, end, state, slope, jacobian, first_step=None):
        """Integrate from ``start`` to ``end``; returns a :class:`Segment`.

        ``state``, ``slope`` and ``jacobian`` are b, db/dc and
        :meth:`jacobian_diagonal` at ``start``; ``first_step``
        the step to try first (None: an eighth of the segment).
        """
        h = (end - start) / 8 if first_step is None else first_step
        times, states, slopes = [start], [state], [slope]
        time, n_rejected = start, 0
        while time < end:
            truncated = h >= end - time
            step = end - time if truncated else h
            new_state, error = self._step(state, slope, step, jacobian)
            error_norm = self._error_norm(error)
            if not np.isfinite(error_norm):
                factor = _SHRINK
            elif error_norm == 0.0:
                factor = _GROW
            else:
                factor = min(_GROW, max(_SHRINK, _SAFETY * (
                    self.error_bound / error_norm) ** (1 / 3)))
            if error_norm <= self.error_bound:
                time = end if truncated else time + step
                state = new_state
                slope, probabilities = self.slope(state)
                jacobian = self.jacobian_diagonal(probabilities)
                times.append(time)
                states.append(state)
                slopes.append(slope)
                # A step cut short at the segment's end says little about
                # the next one: keep the larger proposal.
                h = max(h, step * factor) if truncated else step * factor
            else:
                n_rejected += 1
                h = step * factor
        return Segment(np.array(times), np.stack(states), np.stack(slopes), h,
                       jacobian, n_rejected)

    def _step(self, state, slope, h, jacobian):
        """One ROS34PW2 step with the diagonal T = −``jacobian``.

        Returns the new state and the local error estimate.  I − hγT is
        diagonal: every linear solve is a division.
        """
        t_diagonal = -jacobian
        inverse_w = 1.0 / (1.0 - h * _GAMMA * t_diagonal)
        stages = []
        for i in range(4):
            if i == 0:
                stage_slope = slope
            else:
                stage_state = state + sum(_A[i, j] * stages[j] for j in range(i)
                                          if _A[i, j])
                stage_slope = self.slope(stage_state)[0]
            coupling = sum(_G[i, j] * stages[j] for j in range(i))
            stages.append(inverse_w * (h * stage_slope + h * t_diagonal * coupling))
        new_state = state + sum(_B[i] * stages[i] for i in range(4))
        error = sum((_B[i] - _B_EMBEDDED[i]) * stages[i] for i in range(4))
        return new_state, error


def flow_segment(flow, index, previous=None):
    """Segment ``index`` of ``flow``'s trajectory, continuing ``previous``.

    ``previous`` is segment ``index - 1`` (None for the first): the state,
    slope, bound and proposed step at its end start this one, so the result
    is the same whether the segments are computed in a row or read back from
    a cache.
    """
    start, end = flow.segment_edges(index)
    if index == 0:
        state, slope, jacobian = flow.initial_state()
        first_step = None
    else:
        state, slope = previous.states[-1], previous.slopes[-1]
        jacobian, first_step = previous.jacobian, previous.next_step
    return flow.integrate(start, end, state, slope, jacobian, first_step)


class SegmentSequence:
    """The segments of one trajectory, recomputed on demand from their starts.

    Calling it with an index returns that segment.  Only the end of every
    segment computed so far is kept (O(N·C) each), and the last full
    segment: a segment asked for again is integrated again from its start,
    to the same result, so memory stays independent of the number of steps.
    """

    def __init__(self, flow):
        self.flow = flow
        self.ends = []
        self._last = None

    def __getstate__(self):
        # The last full segment is a cache: not pickled with an estimator.
        return {**self.__dict__, "_last": None}

    def __call__(self, index):
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        first = min(index, len(self.ends))
        previous = self.ends[first - 1] if first else None
        for position in range(first, index + 1):
            previous = flow_segment(self.flow, position, previous)
            if position == len(self.ends):
                self.ends.append(previous.end())
        self._last = (index, previous)
        return previous


def states_at(flow, time_scales, segment_of):
    """The state b at every time scale, shape (T, N, C).

    ``segment_of(index)`` returns segment ``index`` of ``flow`` (a
    :class:`SegmentSequence`, or a cached equivalent).  Time scales must be
    finite: the flow has no limit on separable data.
    """
    states = np.zeros((len(time_scales),) + flow.projected_targets.shape)
    # In increasing order: each segment is asked for once.
    for position in np.argsort(time_scales, kind="stable"):
        time_scale = time_scales[position]
        if time_scale > 0:
            states[position] = segment_of(flow.segment_index(time_scale)).at(time_scale)
    return states
