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

The Jacobian of the flow, −D K_α (D the link's derivative: per point
p(1 − p), or the softmax's C × C block diag(p) − p pᵀ), has eigenvalues
over as many decades as the kernel: the problem is stiff.  The stiffness
sits in the few directions of the largest eigenvalues.  With the m = 64
largest eigenpairs K_α Vₘ = Vₘ diag(λ) (:func:`stiff_basis`, by Lanczos
iteration, O(N²) per iteration, instead of the O(N³) eigendecomposition)
the state x stacks b = Vₘᵀa over the rest q = a − Vₘb, and

    dx/dc = F(x) = (Vₘᵀg ; g − VₘVₘᵀg),     g = Y − p(K_α (Vₘb + q)).

The decay rates of b, r = λⱼ Σᵢ Vᵢⱼ² pᵢₖ(1 − pᵢₖ) for direction j and
output k (the Jacobian's diagonal in the eigenbasis), carry the
stiffness, q has none; over a step from c₀ the flow is written

    dx/dc = −r∘x + N(x),      N(x) = F(x) + r∘x,

with r frozen at c₀, and the exponential integrator ETDRK4 of Cox &
Matthews (2002) solves the linear part exactly and integrates N by the
quadrature x(c₀ + h) = e^{z} x₀ + h ∫₀¹ e^{(1−s)z} N(s) ds (z = −hr,
elementwise) with N interpolated by a quadratic through its values at the
start, the midpoint (two stage estimates) and the end of the step.  The
weights are the functions φ₁, φ₂, φ₃ of z (:func:`phi_functions`); on q
(z = 0) the method is the classical Runge–Kutta method.  It is of order 4
for any rates in the classical sense (on stiff problems this method can
lose order, Hochbruck & Ostermann 2005; the error control sees it).  A
step costs four evaluations of F, each one product of
K_α with an N × C matrix and three with the thin Vₘ, and no linear system
is solved.  From 32 exact directions to all, the number of steps changed
by at most 4 % on the problems measured (see STIFF_DIRECTIONS), and it
was a quarter to a third of that of the Rosenbrock W-method ROS34PW2 with
the same diagonal in the full eigenbasis (the integrator this replaced)
at the same accuracy on 600 and 1500 digits.  Up to 4m training points
every eigen-direction is exact (q is empty).

Accuracy: the local error e of a step is estimated by the change of the
interpolated term at the end of the step, h (4φ₃ − φ₂)(N(x₁) − N(x₃)),
between the last stage x₃ and the new state x₁ (whose F the next step
needs anyway, so the estimate is free).  Weighted by √λⱼ on b and by
√λₘ₊₁ on q, the error's N·C coordinates have a sum of squares that bounds
eᵀK_α e, the squared norm of the output error in the kernel's
reproducing-kernel Hilbert space (q is orthogonal to Vₘ, where
K_α <= λₘ₊₁), and that norm bounds the output error at *every* point,
training or test: |δf(x)| ≤ √K_α(x, x) ‖e‖.  The root-mean-square of the
weighted coordinates is kept below ``tolerance`` / √(trace K_α / N):
output errors of the order of the tolerance at a point of average kernel
diagonal, at any scale of the kernel (a worst case √(N·C) times that).
The probabilities' derivative is at most 1/2 in the maximum norm.  The
estimate is a heuristic, as embedded error estimates are; measured
against solutions at a thousand times the accuracy, the largest error of
a probability was 1 to 9 times the tolerance (the maximum over points
exceeds the controlled mean).

The trajectory is cut into segments at time scales u·2^(k/4)
(u = 1/λ_max): segment k runs from the end of segment k − 1 to the first
step end at or after its edge.  A time between two step ends is reached
by one step of the method from the earlier end, so the steps do not
depend on the times asked for, neither does the solution at a time, and
a search over t can cache the segments and integrate each once.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh
from scipy.special import expit

#: Local error tolerance per step, in units of the outputs (see the module
#: docstring).  The largest error of a
#: probability came out at 1–9 times the tolerance against Radau at rtol
#: 1e-11 (30 points) and against this integrator at 1e-10 (1500 digits);
#: tests/test_cross_entropy_flow.py checks 1e-6.  The number of steps grows
#: like its inverse fourth root.
TOLERANCE = 1e-7

#: Eigen-directions of the kernel whose decay the integrator solves exactly:
#: the largest eigenvalues, where the stiffness is.  From 32 of them to all,
#: the number of steps changed by at most 4 % (600 digits at t = 1e3, 1e5
#: and 1e6; 1500 digits at t = 1e3 and 1e4, down to 16; the 1155 training
#: points of UCI statlog-image at t = 1e5): below the largest few dozen the
#: flow is not stiff at the step sizes its accuracy needs.
STIFF_DIRECTIONS = 64

#: Segments per doubling of the time scale (see CrossEntropyFlow.segment_edge).
_SEGMENTS_PER_DOUBLING = 4

#: Step-size control for an error estimate of order h⁴.
_SAFETY, _SHRINK, _GROW, _ORDER = 0.9, 0.2, 5.0, 4

# Below |z| = 1 the φ functions are summed from their series (the closed
# forms cancel); φ₃'s to z¹⁸ leaves a truncation below 1/22! ≈ 1e-21 there.
_PHI3_SERIES = [1.0 / math.factorial(power + 3) for power in range(19)]


def link_probabilities(outputs):
    """Probabilities of the link: logistic for one column, softmax otherwise.

    Returns the probabilities of the outputs' columns (one column: the
    positive class only).
    """
    if outputs.shape[1] == 1:
        return expit(outputs)
    # The softmax as scipy.special.softmax computes it, without its
    # per-call overhead (the integrator calls this four times a step).
    exponentials = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    exponentials /= exponentials.sum(axis=1, keepdims=True)
    return exponentials


def class_probabilities(outputs):
    """Probabilities of every class, shape (n, n_classes).

    One output (two classes) gives two columns.
    """
    probabilities = link_probabilities(outputs)
    if outputs.shape[1] == 1:
        # expit(-f) rather than 1 - expit(f): exact for large positive f.
        return np.hstack([expit(-outputs), probabilities])
    return probabilities


def _target_residual(outputs, probabilities, targets):
    """Y − p without cancellation where p is close to Y.

    For a sample's own class, 1 − p is computed as the probability of the
    others (logistic: expit(−f); softmax: the sum of the other classes'),
    which keeps its relative accuracy as p → 1; late in training this is
    what still moves the outputs.
    """
    if outputs.shape[1] == 1:
        return np.where(targets > 0, expit(-outputs), -probabilities)
    others = (probabilities * (1.0 - targets)).sum(axis=1, keepdims=True)
    return np.where(targets > 0, others, -probabilities)


def phi_functions(z):
    """e^z, φ₁(z), φ₂(z) and φ₃(z), elementwise, for z <= 0.

    φ₀(z) = e^z and φₖ₊₁(z) = (φₖ(z) − 1/k!)/z, i.e. φₖ(z) = Σⱼ zʲ/(j + k)!:
    the weights of the exponential quadrature ∫₀¹ e^{(1−s)z} s^{k−1} ds =
    φₖ(z)/(k − 1)!.  The recurrence is used where |z| >= 1 (it loses at
    most a few ulps there, at z = −1) and the series below.
    """
    z = np.asarray(z, dtype=float)
    small = np.abs(z) < 1.0
    # The recurrence everywhere, with z = −1 standing in where |z| < 1.
    z_large = np.where(small, -1.0, z)
    exp = np.exp(z)
    phi1 = np.expm1(z_large) / z_large
    phi2 = (phi1 - 1.0) / z_large
    phi3 = (phi2 - 0.5) / z_large
    z_small = z[small]
    if z_small.size:
        # φ₃ from its series, then φ₂ = 1/2 + zφ₃ and φ₁ = 1 + zφ₂, which
        # add small terms to 1/2 and 1 and lose nothing.
        series = np.full_like(z_small, _PHI3_SERIES[-1])
        for coefficient in _PHI3_SERIES[-2::-1]:
            series *= z_small
            series += coefficient
        phi3[small] = series
        series = series * z_small + 0.5
        phi2[small] = series
        phi1[small] = series * z_small + 1.0
    return exp, phi1, phi2, phi3


def exponential_quadrature(state, phis, h, start_term, linear_term, quadratic_term):
    """b(c₀ + h) = e^z b₀ + h ∫₀¹ e^{(1−s)z} N(s) ds for a quadratic N.

    N(s) = start_term + linear_term·s + quadratic_term·s² over the step
    (s in [0, 1]), ∫₀¹ e^{(1−s)z} s^k ds = k! φ_{k+1}(z), and ``phis`` is
    :func:`phi_functions` of z.
    """
    exp, phi1, phi2, phi3 = phis
    return exp * state + h * (phi1 * start_term + phi2 * linear_term
                              + 2.0 * phi3 * quadratic_term)


@dataclass
class Segment:
    """The trajectory over one segment of time scales.

    ``times`` (n + 1,) are the step edges, ``states`` and ``slopes``
    (n + 1, m + n_rest, C) the state x and F(x) there, and ``rates``
    (n + 1, m, C) the decay rates there;
    ``next_step`` is the step size the controller proposes after the segment
    and ``n_rejected`` the number of steps the error control rejected.
    """

    times: np.ndarray
    states: np.ndarray
    slopes: np.ndarray
    rates: np.ndarray
    next_step: float
    n_rejected: int

    def end(self):
        """The segment reduced to its end: all that the next segment needs."""
        return Segment(self.times[-1:], self.states[-1:], self.slopes[-1:],
                       self.rates[-1:], self.next_step, self.n_rejected)


def stiff_basis(kernel, n_directions=None):
    """The largest eigenpairs of ``kernel`` (K_α) and the next eigenvalue.

    Returns (eigenvalues (m,), eigenvectors (N, m), bound), eigenvalues in
    increasing order and clipped at 0; ``bound`` >= every eigenvalue of K_α
    on the orthogonal complement of the eigenvectors (0 when m = N).
    ``n_directions`` (default ``STIFF_DIRECTIONS``) of them, plus one for
    the bound, by Lanczos iteration (ARPACK, from a fixed start vector so
    that the basis is reproducible), or from the dense eigendecomposition
    when Lanczos fails; all N when N is at most four times as many (the
    dense eigendecomposition then costs about as much as Lanczos).
    """
    n_directions = STIFF_DIRECTIONS if n_directions is None else n_directions
    n_train = kernel.shape[0]
    if n_train <= 4 * n_directions:
        eigenvalues, eigenvectors = linalg.eigh(kernel)
        return np.maximum(eigenvalues, 0.0), eigenvectors, 0.0
    n_wanted = n_directions + 1
    try:
        eigenvalues, eigenvectors = eigsh(kernel, k=n_wanted, which="LA",
                                          v0=np.ones(n_train))
    except (ArpackNoConvergence, ArpackError):
        eigenvalues, eigenvectors = linalg.eigh(
            kernel, subset_by_index=[n_train - n_wanted, n_train - 1])
    order = np.argsort(eigenvalues, kind="stable")
    eigenvalues = np.maximum(eigenvalues[order], 0.0)
    eigenvectors = eigenvectors[:, order]
    return eigenvalues[1:], np.ascontiguousarray(eigenvectors[:, 1:]), eigenvalues[0]


class CrossEntropyFlow:
    """The flow da/dc = Y − p(K_α a), integrated in the stiff basis.

    The state x stacks b = Vₘᵀa (m rows: the coordinates along the m
    eigenvectors Vₘ of :func:`stiff_basis`) over the rest q = a − Vₘb
    (N rows; none when m = N), so that a = Vₘb + q and

        dx/dc = F(x) = (Vₘᵀg ; g − VₘVₘᵀg),   g = Y − p(K_α a).

    The decay rates are those of b; q has none.

    Parameters
    ----------
    kernel : ndarray of shape (N, N)
        K_α = K + αI, in the units of the time scales (kept, not copied).
    targets : ndarray of shape (N, C)
        One-hot targets (one column of 0/1 for two classes and the logistic
        link).
    basis : tuple, default=None
        :func:`stiff_basis` of ``kernel`` (None: computed here).
    tolerance : float, default=TOLERANCE
        Local error per step in the outputs, at a point of average kernel
        diagonal (see the module docstring).
    """

    def __init__(self, kernel, targets, basis=None, tolerance=TOLERANCE):
        self.kernel = kernel
        self.targets = targets
        eigenvalues, eigenvectors, bound = (stiff_basis(kernel) if basis is None
                                            else basis)
        self.eigenvalues = eigenvalues
        self.eigenvectors = eigenvectors
        n_train = kernel.shape[0]
        self.n_rest = n_train if eigenvalues.size < n_train else 0
        # ‖e‖_K bounds |δf(x)| / √K(x, x), so tolerance / √(trace K_α / N)
        # in the root-mean-square over N·C coordinates means output errors
        # of the order of the tolerance at a point of average kernel
        # diagonal, whatever the kernel's scale.
        trace = float(np.trace(kernel)) if n_train else 0.0
        self.error_bound = tolerance / math.sqrt(max(trace / max(n_train, 1),
                                                     np.finfo(float).tiny))
        self._n_coordinates = max(n_train * targets.shape[1], 1)
        largest = eigenvalues[-1] if eigenvalues.size else 0.0
        self.unit = 1.0 / largest if largest > 0 else 1.0
        # ‖e‖²_K = Σⱼ λⱼ bⱼ² + qᵀK_α q <= Σⱼ λⱼ bⱼ² + bound·‖q‖² (q is
        # orthogonal to the top eigenvectors).
        self._error_weights = np.sqrt(np.concatenate(
            [eigenvalues, np.full(self.n_rest, bound)]))[:, None]
        self._squared_eigenvectors = None

    def __getstate__(self):
        # Vₘ∘Vₘ is cheap to recompute: not pickled.
        return {**self.__dict__, "_squared_eigenvectors": None}

    def segment_edge(self, index):
        """The time scale segment ``index`` reaches: u·2^(index/4).

        Four segments per doubling of the time: a trajectory integrated to
        a time overshoots it by at most a fifth, about one step.
        """
        return self.unit * 2.0 ** (index / _SEGMENTS_PER_DOUBLING)

    @property
    def state_shape(self):
        """(m + n_rest, C)."""
        return (self.eigenvalues.size + self.n_rest, self.targets.shape[1])

    def initial_state(self):
        """x(0) = 0, F there and the decay rates there."""
        state = np.zeros(self.state_shape)
        slope, probabilities = self.slope(state)
        return state, slope, self.decay_rates(probabilities)

    def coefficients(self, states):
        """The dual coefficients a = Vₘb + q of states (..., m + n_rest, C)."""
        m = self.eigenvalues.size
        coefficients = np.matmul(self.eigenvectors, states[..., :m, :])
        if self.n_rest:
            coefficients += states[..., m:, :]
        return coefficients

    def slope(self, state):
        """F(x) = dx/dc at ``state``, and the probabilities there (N, C)."""
        m = self.eigenvalues.size
        outputs = self.kernel @ self.coefficients(state)
        probabilities = link_probabilities(outputs)
        gradient = _target_residual(outputs, probabilities, self.targets)
        along = self.eigenvectors.T @ gradient
        if not self.n_rest:
            return along, probabilities
        slope = np.empty(self.state_shape)
        slope[:m] = along
        np.subtract(gradient, self.eigenvectors @ along, out=slope[m:])
        return slope, probabilities

    def decay_rates(self, probabilities):
        """Rates r = λⱼ Σᵢ Vᵢⱼ² pᵢₖ(1 − pᵢₖ) of b, shape (m, C) (q has none).

        The Jacobian's diagonal in the eigenbasis, negated (for the softmax,
        the diagonal of each point's block, p(1 − p)).
        """
        derivative = probabilities * (1.0 - probabilities)
        if self._squared_eigenvectors is None:
            self._squared_eigenvectors = np.square(self.eigenvectors)
        return self._squared_eigenvectors.T @ derivative * self.eigenvalues[:, None]

    def _error_norm(self, error):
        """Root-mean-square over the N·C coordinates of the RKHS-weighted error."""
        return float(np.linalg.norm(self._error_weights * error)
                     / math.sqrt(self._n_coordinates))

    def integrate(self, start, end, state, slope, rates, first_step=None):
        """Steps from ``start`` to the first step end at or after ``end``.

        ``state``, ``slope`` and ``rates`` are x, F(x) and
        :meth:`decay_rates` at ``start``; ``first_step`` the step to try
        first (None: an eighth of ``end - start``).  Returns a
        :class:`Segment`.
        """
        h = (end - start) / 8 if first_step is None else first_step
        times, states, slopes, all_rates = [start], [state], [slope], [rates]
        time, n_rejected = start, 0
        while time < end:
            if not h > 4 * np.finfo(float).eps * time:
                raise ValueError(
                    "The cross-entropy flow cannot be integrated past the time "
                    f"scale c = eta*t/N = {time:.6g} (in the kernel's units): "
                    "the step the error control allows is below the float64 "
                    "resolution of the time.  Use a smaller t or a larger tol."
                )
            new_state, new_slope, probabilities, error = self._step(
                state, slope, rates, h)
            error_norm = self._error_norm(error)
            if not np.isfinite(error_norm):
                factor = _SHRINK
            elif error_norm == 0.0:
                factor = _GROW
            else:
                factor = min(_GROW, max(_SHRINK, _SAFETY * (
                    self.error_bound / error_norm) ** (1 / _ORDER)))
            if error_norm <= self.error_bound:
                time += h
                state, slope = new_state, new_slope
                rates = self.decay_rates(probabilities)
                times.append(time)
                states.append(state)
                slopes.append(slope)
                all_rates.append(rates)
            else:
                n_rejected += 1
            h *= factor
        return Segment(np.array(times), np.stack(states), np.stack(slopes),
                       np.stack(all_rates), h, n_rejected)

    def state_at(self, segment, time):
        """x at ``time``, between ``segment``'s first and last edge.

        Inside a step, one step of the method from the step's start to
        ``time`` (three evaluations of F): its local error is that of a step
        shorter than one the error control accepted, and the steps
        themselves do not depend on the times asked for.
        """
        step = int(np.searchsorted(segment.times, time, side="right")) - 1
        step = min(max(step, 0), segment.times.size - 1)
        h = time - segment.times[step]
        if h <= 0:
            return segment.states[step].copy()
        return self._advance(segment.states[step], segment.slopes[step],
                             segment.rates[step], h)[0]

    def _advance(self, state, slope, rates, h):
        """One ETDRK4 step of size ``h`` with the decay rates frozen.

        Returns the new state, the interpolated term's value at the end
        stage and the weight of that value in the step.
        """
        if self.n_rest:
            rates = np.vstack([rates, np.zeros((self.n_rest, rates.shape[1]))])
        z = -h * rates
        half_exp, half_phi1, _, _ = phi_functions(0.5 * z)
        half_weight = (0.5 * h) * half_phi1
        start_term = slope + rates * state
        first = half_exp * state + half_weight * start_term
        first_term = self.slope(first)[0] + rates * first
        second = half_exp * state + half_weight * first_term
        second_term = self.slope(second)[0] + rates * second
        third = half_exp * first + half_weight * (2.0 * second_term - start_term)
        third_term = self.slope(third)[0] + rates * third
        # The quadratic through start_term, the mean of the two midpoint
        # terms and third_term, in powers of s.
        middle = first_term + second_term
        linear_term = 2.0 * middle - 3.0 * start_term - third_term
        quadratic_term = 2.0 * (start_term + third_term - middle)
        phis = phi_functions(z)
        new_state = exponential_quadrature(state, phis, h, start_term, linear_term,
                                           quadratic_term)
        _, _, phi2, phi3 = phis
        return new_state, third_term, h * (4.0 * phi3 - phi2)

    def _step(self, state, slope, rates, h):
        """A step and its error estimate: the new state, F and the
        probabilities there, and the estimated local error."""
        new_state, third_term, end_weight = self._advance(state, slope, rates, h)
        new_slope, probabilities = self.slope(new_state)
        error = new_slope - third_term
        error[:rates.shape[0]] += rates * new_state[:rates.shape[0]]
        error *= end_weight
        return new_state, new_slope, probabilities, error


def flow_segment(flow, index, previous=None):
    """Segment ``index`` of ``flow``'s trajectory, continuing ``previous``.

    ``previous`` is segment ``index - 1`` (None for the first): the state,
    F, rates and proposed step at its end start this one, so the result is
    the same whether the segments are computed in a row or read back from a
    cache.
    """
    end = flow.segment_edge(index)
    if index == 0:
        state, slope, rates = flow.initial_state()
        return flow.integrate(0.0, end, state, slope, rates)
    return flow.integrate(previous.times[-1], end, previous.states[-1],
                          previous.slopes[-1], previous.rates[-1],
                          previous.next_step)


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
    """The state x at every time scale, shape (T,) + ``flow.state_shape``.

    ``segment_of(index)`` returns segment ``index`` of ``flow`` (a
    :class:`SegmentSequence`, or a cached equivalent).  Time scales must be
    finite: the flow has no limit on separable data.
    """
    states = np.zeros((len(time_scales),) + flow.state_shape)
    index, segment = 0, None
    # In increasing order: each segment is asked for once, in turn.
    for position in np.argsort(time_scales, kind="stable"):
        time_scale = time_scales[position]
        if time_scale <= 0:
            continue
        if segment is None:
            segment = segment_of(index)
        while segment.times[-1] < time_scale:
            index += 1
            segment = segment_of(index)
        states[position] = flow.state_at(segment, time_scale)
    return states
