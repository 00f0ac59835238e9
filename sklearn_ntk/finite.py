r"""Finite-width networks: forward pass, empirical NTK and gradient descent.

The infinite-width kernels of :mod:`sklearn_ntk` are limits of quantities that
can be measured on a finite network.  This module provides such a network, in
plain numpy, so that the claims of Jacot, Gabriel & Hongler (2018) can be
checked against :class:`sklearn_ntk.NTK` and ``NTKRegressor``:

* :class:`Network` is a fully-connected network with one output in NTK
  parametrization,
  :math:`\tilde\alpha^{(\ell+1)} = \frac{\sigma_w}{\sqrt{n_\ell}}
  W^{(\ell)} \alpha^{(\ell)} + \beta b^{(\ell)}`,
  :math:`\alpha^{(\ell)} = \sigma(\tilde\alpha^{(\ell)})`,
  :math:`\alpha^{(0)} = x`, all parameters iid :math:`N(0, 1)`.  Its
  empirical NTK :math:`\Theta(x, x'; \theta) = \langle \nabla_\theta
  f(x), \nabla_\theta f(x') \rangle` and empirical NNGP (readout
  features) are computed for whole matrices by the backprop formula, and
  :meth:`Network.fit` trains it in place by full-batch gradient descent.
* :class:`FiniteNetworkRegressor` wraps one trained network as a
  scikit-learn regressor with the parameters of ``NTKRegressor``, so that a
  finite network and its infinite-width limit are compared with the same code.

The forward pass and backpropagation are written once, in ``_DenseLayers``,
which :class:`Network` extends and the random-feature samplers
(:class:`sklearn_ntk.NTKSampler`, :class:`sklearn_ntk.NNGPSampler`) build
from the weights they draw.

**Time scale.**
The cost is the least-squares cost of the user guide,
:math:`C = \frac{1}{2N} \sum_i (f(x_i) - y_i)^2`.
``n_steps`` gradient steps of size :math:`\eta` follow the gradient flow
for the time :math:`\eta \cdot` ``n_steps``, which is what
``NTKRegressor(learning_rate=η, t=n_steps)`` describes in the limit (its
time scale is :math:`c = \eta t / N`).

**Precision and memory.**
A network stores its parameters in ``dtype``.  float64 (the default) is
needed when comparing against the limit at small widths, where differences
of order 1e-8 matter (e.g. finite-difference checks).  For very wide
networks the statistical fluctuations we study are of order
:math:`\text{width}^{-1/2}` (1e-2 at width :math:`10^4`), far above float32 rounding (about 1e-7 per entry,
1e-6 after a 10⁴-term inner product), so ``dtype=np.float32`` is the sensible
choice there: it halves the memory (a 10⁴ × 10⁴ layer takes 400 MB instead
of 800 MB) and roughly doubles the speed of the matrix products.  The
parameters are drawn in float64 and then rounded, so a float32 network is the
rounding of the float64 network with the same seed.
Gradient steps update the weight matrices in place with a BLAS ``gemm``
(no temporary of the size of a weight matrix is ever allocated), and
kernels, predictions and costs are returned in float64.  All products run on
one BLAS thread (measured faster on a shared machine); train independent
networks in parallel (e.g. with joblib) to use several cores.
"""

import contextlib
import numbers

import numpy as np
from scipy.linalg import get_blas_funcs
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._activations import get_activation
from ._parameters import (
    NETWORK_PARAMETER_CONSTRAINTS,
    activation_name,
    check_parameters,
    non_negative_integer,
    positive_integer,
    positive_real,
)
from ._range import checked_range, range_error
from ._recursion import single_threaded_blas

__all__ = ["Network", "FiniteNetworkRegressor"]

# Rows of a weight matrix drawn per call of the random state: keeps the
# float64 temporary small when a wide float32 matrix is initialised.
_INIT_CHUNK = 1 << 20

# Networks run their matrix products on one BLAS thread.  Most products have
# few rows (memory-bound, matrix-vector-like) or are small, and on a shared
# 2-core machine we measured BLAS threads making them 1.3-20x *slower*
# (width 100, 512 rows: 11 ms per gradient step on one thread, 200 ms on
# two).  To use several cores, train independent networks in parallel, e.g.
# with joblib.  Tiny layers are left alone: setting the limit costs ~1 ms.
_SINGLE_THREAD_MIN_ENTRIES = 1 << 12


def _blas_threads(largest_layer):
    """Context running BLAS on one thread (see the comment above)."""
    if largest_layer >= _SINGLE_THREAD_MIN_ENTRIES:
        return single_threaded_blas()
    return contextlib.nullcontext()


class _DenseLayers:
    """Dense layers in NTK parametrization: the package's one forward pass and backpropagation.

    Layer l computes ``α̃⁽ˡ⁺¹⁾ = σ_w / √n_l · W⁽ˡ⁾ α⁽ˡ⁾ + β b⁽ˡ⁾`` from its
    input α⁽ˡ⁾ (``α⁽⁰⁾ = x``); a hidden layer's output is ``α⁽ˡ⁺¹⁾ = σ(α̃⁽ˡ⁺¹⁾)``.
    :class:`Network` is such a stack (drawn i.i.d. and trained in place), and
    the random-feature samplers of :mod:`sklearn_ntk` build one from the
    weights they draw at fit.

    Parameters
    ----------
    weights : list of ndarray
        ``weights[l]`` is W⁽ˡ⁾, of shape (n_{l+1}, n_l), all of one dtype.
    biases : list of ndarray
        ``biases[l]`` is b⁽ˡ⁾, of shape (n_{l+1},).
    activation : Activation
        σ, from ``get_activation``.
    beta, weight_std : float
        β and σ_w.
    dtype : numpy dtype
        The dtype of the parameters and of every pass.
    """

    def __init__(self, weights, biases, activation, beta, weight_std, dtype):
        self.weights = weights
        self.biases = biases
        self._activation = activation
        self.beta = beta
        self.weight_std = weight_std
        self.dtype = np.dtype(dtype)
        # σ_w / sqrt(n_l): the NTK-parametrization factor of layer l.
        self._scales = [weight_std / np.sqrt(weight.shape[1]) for weight in weights]

    # -- elementwise activation ------------------------------------------
    def _activate(self, z, need_derivative):
        """Return (σ(z), σ'(z) or None), overwriting z where possible."""
        act = self._activation
        if act.piecewise_linear:
            # In-place path for relu / leaky_relu / abs: no float64 round
            # trip and no temporary of the size of z besides σ'.
            positive = z > 0
            derivative = None
            if need_derivative:
                derivative = np.where(
                    positive, z.dtype.type(act.positive_slope),
                    z.dtype.type(act.negative_slope),
                )
            if act.negative_slope == 0.0 and act.positive_slope == 1.0:
                np.maximum(z, 0, out=z)
            else:
                z *= np.where(positive, z.dtype.type(act.positive_slope),
                              z.dtype.type(act.negative_slope))
            return z, derivative
        derivative = None
        if need_derivative:
            derivative = np.asarray(act.derivative(z)).astype(z.dtype, copy=False)
        return np.asarray(act.function(z)).astype(z.dtype, copy=False), derivative

    # -- passes ------------------------------------------------------------
    def _pre_activation(self, a, layer):
        """α̃⁽ˡ⁺¹⁾ (a new array) from the input α⁽ˡ⁾ of layer l."""
        z = a @ self.weights[layer].T
        z *= self.dtype.type(self._scales[layer])
        if self.beta:
            z += self.dtype.type(self.beta) * self.biases[layer]
        return z

    def _forward(self, X, n_layers, keep):
        """Forward pass through the first ``n_layers`` layers, each followed by σ.

        Returns α⁽ⁿ⁾ (n = ``n_layers``) and, if ``keep``, the list of layer
        inputs α⁽ˡ⁾ (l = 0 … n) and of derivatives σ'(α̃⁽ˡ⁾) (l = 1 … n;
        index 0 is None); otherwise those lists hold X and None only.
        """
        inputs, derivatives = [X], [None]
        a = X
        for layer in range(n_layers):
            a, derivative = self._activate(
                self._pre_activation(a, layer), need_derivative=keep
            )
            if keep:
                inputs.append(a)
                derivatives.append(derivative)
        return a, inputs, derivatives

    def _backward(self, derivatives, delta):
        """Back-propagate from the top layer: yield (l, δ⁽ˡ⁺¹⁾) for l = top … 0.

        ``delta`` is δ at the output of the top layer, shape (n, n_top):
        ones for ∇f itself, residuals for the gradient of the cost.
        δ⁽ˡ⁺¹⁾ = ∂(delta·output)/∂α̃⁽ˡ⁺¹⁾ has shape (n, n_{l+1});
        ``derivatives`` are those of :meth:`_forward` with ``keep=True``.
        δ⁽ˡ⁾ is computed from W⁽ˡ⁾ before δ⁽ˡ⁺¹⁾ is yielded, so a consumer may
        update layer l in place (a gradient step) without changing the
        gradients below it: the step is then the exact simultaneous one.
        """
        for layer in range(len(self.weights) - 1, -1, -1):
            below = None
            if layer > 0:
                below = delta @ self.weights[layer]
                below *= self.dtype.type(self._scales[layer])
                below *= derivatives[layer]
            yield layer, delta
            delta = below


class Network(_DenseLayers):
    """A finite fully-connected network with one output, in NTK parametrization.

    Layer l (l = 0 … depth − 1) computes
    ``α̃⁽ˡ⁺¹⁾ = weight_std / sqrt(n_l) · W⁽ˡ⁾ α⁽ˡ⁾ + beta · b⁽ˡ⁾`` with
    ``α⁽⁰⁾ = x`` and ``α⁽ˡ⁾ = σ(α̃⁽ˡ⁾)`` for the hidden layers; the output is
    ``f(x) = α̃⁽ᴸ⁾``.  Widths are ``n_0 = n_features``,
    ``n_1 = … = n_{L−1} = width`` and ``n_L = 1``; all weights and biases are
    drawn iid N(0, 1).  As the width grows, the empirical kernels converge to
    :class:`sklearn_ntk.NTK` and :class:`sklearn_ntk.NNGP` with the same
    ``depth``, ``activation``, ``beta`` and ``weight_std``.

    Parameters
    ----------
    n_features : int
        Input dimension n_0.
    depth : int, default=3
        Number of dense layers L >= 1 (L − 1 hidden layers); depth 1 is the
        linear model.
    width : int, default=512
        Number of units of every hidden layer.
    activation : str or callable, default="relu"
        Any activation of the registry (see ``sklearn_ntk.NTK``) or a
        vectorised callable; its derivative is used for backpropagation.
    beta : float, default=0.1
        Bias multiplier β >= 0.
    weight_std : float, default=1.0
        Weight multiplier σ_w > 0.
    random_state : int, RandomState instance or None, default=None
        Draws the initial parameters.
    dtype : {np.float64, np.float32}, default=np.float64
        Storage and arithmetic precision of the parameters and activations;
        see the module documentation for when float32 is appropriate.

    Attributes
    ----------
    weights : list of ndarray
        ``weights[l]`` is W⁽ˡ⁾, of shape (n_{l+1}, n_l).
    biases : list of ndarray
        ``biases[l]`` is b⁽ˡ⁾, of shape (n_{l+1},).
    widths : tuple of int
        (n_0, n_1, …, n_L).
    n_parameters : int
        Total number of parameters P.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntk import NNGP, NTK
    >>> from sklearn_ntk.finite import Network
    >>> X = np.array([[1.0, 0.0], [np.cos(1.0), np.sin(1.0)]])
    >>> net = Network(2, depth=4, width=512, random_state=0)
    >>> net
    Network(n_features=2, depth=4, width=512, activation='relu', beta=0.1,
            weight_std=1, dtype=float64)
    >>> net.n_parameters
    527361
    >>> net.predict(X).shape
    (2,)
    >>> theta = net.ntk(X)
    >>> theta.shape
    (2, 2)
    >>> bool(np.abs(theta - NTK(depth=4)(X)).max() < 0.1)  # Θ∞(x, x) = 0.2825
    True
    >>> # Spread ~ sqrt(2 / width) = 0.06 of the limit, 0.08125 at x = x'
    >>> bool(np.abs(net.nngp(X) - NNGP(depth=4)(X)).max() < 0.03)
    True
    >>> y = [0.0, 1.0]
    >>> net.fit(X, y, learning_rate=1.0, n_steps=200).cost(X, y) < 1e-3
    True
    """

    def __init__(
        self,
        n_features,
        depth=3,
        width=512,
        activation="relu",
        beta=0.1,
        weight_std=1.0,
        random_state=None,
        dtype=np.float64,
    ):
        self.n_features = n_features
        self.depth = depth
        self.width = width
        self.activation = activation
        check_parameters(
            "Network", {"n_features": [positive_integer()], "width": [positive_integer()]},
            n_features=n_features, depth=depth, width=width, activation=activation,
            beta=beta, weight_std=weight_std,
        )
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}.")
        self.widths = (int(n_features),) + (self.width,) * (depth - 1) + (1,)
        self._largest_layer = max(
            n_in * n_out for n_in, n_out in zip(self.widths[:-1], self.widths[1:])
        )

        # The parameters come from a Generator seeded by the random state:
        # its normal sampler is several times faster than RandomState's,
        # which matters for 10⁸-entry layers.
        seed = check_random_state(random_state).randint(
            np.iinfo(np.int32).max, size=4
        )
        rng = np.random.default_rng(seed)
        weights, biases = [], []
        for n_in, n_out in zip(self.widths[:-1], self.widths[1:]):
            weight = np.empty((n_out, n_in), dtype=dtype)
            rows = max(1, _INIT_CHUNK // n_in)
            for start in range(0, n_out, rows):
                stop = min(start + rows, n_out)
                weight[start:stop] = rng.standard_normal((stop - start, n_in))
            weights.append(weight)
            biases.append(rng.standard_normal(n_out).astype(dtype))
        super().__init__(weights, biases, get_activation(activation), beta,
                         weight_std, dtype)

    def __repr__(self):
        return (
            f"Network(n_features={self.widths[0]}, depth={self.depth}, "
            f"width={self.width}, activation={activation_name(self.activation)!r}, "
            f"beta={self.beta:g}, "
            f"weight_std={self.weight_std:g}, dtype={self.dtype.name})"
        )

    @property
    def n_parameters(self):
        return sum(w.size + b.size for w, b in zip(self.weights, self.biases))

    def _output(self, X, keep):
        """f(X) (float64, shape (n,)) and the hidden layers' inputs and derivatives.

        The lists are those of ``_forward(X, depth - 1, keep)``: α⁽ˡ⁾ for
        l = 0 … L−1 and σ'(α̃⁽ˡ⁾) for l = 1 … L−1 if ``keep``.
        """
        a, inputs, derivatives = self._forward(X, self.depth - 1, keep)
        output = self._pre_activation(a, self.depth - 1)[:, 0].astype(np.float64)
        return output, inputs, derivatives

    def _check_X(self, X, name="X"):
        X = check_array(X, dtype=np.float64, input_name=name)
        if X.shape[1] != self.widths[0]:
            raise ValueError(
                f"{name} has {X.shape[1]} features, but the network expects "
                f"{self.widths[0]}."
            )
        return X.astype(self.dtype, copy=False)

    def predict(self, X):
        """Network output f(x; θ).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, with the network's ``n_features`` columns.

        Returns
        -------
        f : ndarray of shape (n_samples,)
        """
        X = check_array(X, dtype=np.float64, input_name="X")
        with self._checked_range("The network outputs", X):
            X = self._check_X(X)
            with _blas_threads(self._largest_layer):
                output = self._output(X, keep=False)[0]
        return self._check_finite("The network outputs", output, X)

    def _checked_range(self, what, *arrays):
        """Overflow (in ``dtype`` too) raises the range error, naming X."""
        what = f"{what} (in {self.dtype.name})"
        return checked_range(what, arrays, self.beta, self.weight_std)

    def _check_finite(self, what, result, *arrays):
        """Raise the range error if ``result`` has NaN or inf; else return it.

        Activations (a user's callable) need not raise on overflow.
        """
        if not np.all(np.isfinite(result)):
            raise range_error(
                f"{what} are not representable in {self.dtype.name}",
                arrays, self.beta, self.weight_std,
            )
        return result

    def _kernels(self, X, Y, kind):
        X = check_array(X, dtype=np.float64, input_name="X")
        Y = None if Y is None else check_array(Y, dtype=np.float64, input_name="Y")
        arrays = (X,) if Y is None else (X, Y)
        what = f"The empirical {kind.upper()} values"
        with self._checked_range(what, *arrays):
            X = self._check_X(X)
            Y = None if Y is None else self._check_X(Y, "Y")
            with _blas_threads(self._largest_layer):
                gram = self._kernels_checked(X, Y, kind)
        return self._check_finite(what, gram, *arrays)

    def _kernels_checked(self, X, Y, kind):
        _, inputs_x, derivatives_x = self._output(X, keep=True)
        if Y is None:
            inputs_y = inputs_x
        else:
            _, inputs_y, derivatives_y = self._output(Y, keep=True)
        beta2 = self.beta**2
        weight_std2 = self.weight_std**2
        if kind == "nngp":
            last = self.depth - 1
            gram = (inputs_x[last] @ inputs_y[last].T).astype(np.float64)
            gram *= weight_std2 / self.widths[last]
            gram += beta2
            return gram
        deltas_x = self._deltas(derivatives_x, len(X))
        deltas_y = deltas_x if Y is None else self._deltas(derivatives_y, len(Y))
        # Θ = Σ_l [σ_w² α⁽ˡ⁾·α⁽ˡ⁾'/n_l + β²] · [δ⁽ˡ⁺¹⁾·δ⁽ˡ⁺¹⁾']: the weight
        # gradient of layer l is an outer product, so its inner product
        # factorises, and the bias gradient is δ⁽ˡ⁺¹⁾ times β.
        theta = np.zeros((X.shape[0], len(inputs_y[0])))
        for layer in range(self.depth):
            forward = (inputs_x[layer] @ inputs_y[layer].T).astype(np.float64)
            forward *= weight_std2 / self.widths[layer]
            forward += beta2
            backward = (deltas_x[layer] @ deltas_y[layer].T).astype(np.float64)
            forward *= backward
            theta += forward
        return theta

    def _deltas(self, derivatives, n_samples):
        """The list of δ⁽ˡ⁺¹⁾ = ∂f/∂α̃⁽ˡ⁺¹⁾, indexed by l = 0 … L−1."""
        deltas = [None] * self.depth
        seed = np.ones((n_samples, 1), dtype=self.dtype)
        for layer, delta in self._backward(derivatives, seed):
            deltas[layer] = delta
        return deltas

    def ntk(self, X, Y=None):
        """Empirical neural tangent kernel Θ(x, x'; θ) = ⟨∇θ f(x), ∇θ f(x')⟩.

        Computed by the backprop formula (layer-wise Gram matrices of the
        activations and of the back-propagated gradients), in
        O((n_X + n_Y) · P + n_X · n_Y · L · width) time, without forming the
        n × P Jacobian.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
            Inputs of the rows.
        Y : array-like of shape (n_samples_Y, n_features), default=None
            Inputs of the columns; if None, Θ(X, X) is returned.

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y)
            Θ(x_i, y_j; θ) in float64, whatever the network's dtype.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_ntk.finite import Network
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> net = Network(2, depth=3, width=64, random_state=0)
        >>> K = net.ntk(X)
        >>> bool(np.allclose(K, K.T)), bool(np.all(np.linalg.eigvalsh(K) > 0))
        (True, True)
        >>> bool(np.allclose(net.ntk(X, X[:1]), K[:, :1]))
        True
        """
        return self._kernels(X, Y, "ntk")

    def nngp(self, X, Y=None):
        """Empirical NNGP kernel σ_w² α⁽ᴸ⁻¹⁾(x)·α⁽ᴸ⁻¹⁾(x')/n_{L−1} + β².

        This is the NTK of the readout layer alone (the kernel of a network
        whose hidden layers are frozen); its expectation over initialisations
        tends to :class:`sklearn_ntk.NNGP`.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
            Inputs of the rows.
        Y : array-like of shape (n_samples_Y, n_features), default=None
            Inputs of the columns; if None, the NNGP of X with itself.

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y)
            The empirical NNGP kernel of the rows and columns, in float64.

        Examples
        --------
        The readout's term is one of the empirical NTK's terms, each of them
        nonnegative on the diagonal:

        >>> import numpy as np
        >>> from sklearn_ntk.finite import Network
        >>> net = Network(3, depth=3, width=64, random_state=0)
        >>> X = np.random.default_rng(0).normal(size=(5, 3))
        >>> bool(np.all(np.diag(net.nngp(X)) <= np.diag(net.ntk(X))))
        True
        """
        return self._kernels(X, Y, "nngp")

    def cost(self, X, y):
        """Least-squares cost 1/(2N) Σᵢ (f(xᵢ) − yᵢ)²."""
        y = np.asarray(y, dtype=np.float64).ravel()
        return 0.5 * float(np.mean((self.predict(X) - y) ** 2))

    def fit(self, X, y, learning_rate=1.0, n_steps=100, callback=None):
        """Train all layers in place by full-batch gradient descent.

        Each step is θ ← θ − η ∇θ C(θ) with C = 1/(2N) Σᵢ (f(xᵢ) − yᵢ)², so
        ``n_steps`` steps approximate the gradient flow up to time
        η · n_steps (``NTKRegressor(learning_rate=η, t=n_steps)``).

        Parameters
        ----------
        X : array-like of shape (N, n_features)
            Training inputs, with the network's ``n_features`` columns.
        y : array-like of shape (N,)
            Training targets.
        learning_rate : float, default=1.0
            Step size η > 0.
        n_steps : int, default=100
            Number of gradient steps (>= 0).
        callback : callable, default=None
            Called as ``callback(step, network, predictions)`` with the
            training-set predictions f(X; θ_step) (float64, shape (N,)) for
            step = 0 … n_steps, before each update and once after the last.
            Calling ``network.ntk`` from it measures the kernel during
            training.

        Returns
        -------
        self : Network

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_ntk.finite import Network
        >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> y = np.array([0.5, -0.5, 0.0])
        >>> net = Network(2, depth=3, width=128, random_state=0)
        >>> costs = []
        >>> def record(step, network, f):
        ...     costs.append(np.mean((f - y) ** 2) / 2)
        >>> _ = net.fit(X, y, learning_rate=1.0, n_steps=100, callback=record)
        >>> len(costs), bool(costs[-1] < 1e-2 * costs[0])
        (101, True)
        """
        X = self._check_X(X)
        y = check_array(y, dtype=np.float64, ensure_2d=False, input_name="y")
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(
                f"y must have shape ({len(X)},), got {y.shape}."
            )
        check_parameters(
            "Network.fit",
            {"learning_rate": [positive_real()], "n_steps": [non_negative_integer()]},
            learning_rate=learning_rate, n_steps=n_steps,
        )
        # Divergence shows up as non-finite outputs and is reported as such
        # (with a hint) instead of as a stream of overflow warnings.
        with _blas_threads(self._largest_layer), np.errstate(
            over="ignore", invalid="ignore"
        ):
            self._descend(X, y, learning_rate, int(n_steps), callback)
        return self

    def _descend(self, X, y, learning_rate, n_steps, callback):
        n_samples = len(X)
        for step in range(n_steps + 1):
            keep = step < n_steps
            output, inputs, derivatives = self._output(X, keep=keep)
            if not np.all(np.isfinite(output)):
                raise FloatingPointError(
                    f"Gradient descent diverged at step {step}: the learning "
                    f"rate {learning_rate} is too large for this network and "
                    "data (a step is stable when it is below 2N over the "
                    "largest eigenvalue of the empirical NTK; scaling the "
                    "inputs, e.g. with StandardScaler, lowers that eigenvalue)."
                )
            if callback is not None:
                callback(step, self, output)
            if not keep:
                break
            residual = (output - y).astype(self.dtype)[:, None]
            self._step(inputs, derivatives, residual, learning_rate / n_samples)

    def _step(self, inputs, derivatives, residual, rate):
        """One update θ ← θ − rate · Σᵢ Δᵢ ∇θ f(xᵢ), layers from the top.

        ``_backward`` has propagated the gradient through layer l with W⁽ˡ⁾
        before it is updated, so the step is the exact simultaneous step.
        """
        # δ = ∂/∂α̃⁽ˡ⁺¹⁾ of Σᵢ Δᵢ f(xᵢ)
        for layer, delta in self._backward(derivatives, residual):
            weight = self.weights[layer]
            # W ← W − rate·scale·δᵀ α, in place: weight.T is Fortran-ordered,
            # so gemm writes straight into it (C = α Aᵀ B + 1·C).
            gemm = get_blas_funcs("gemm", (weight,))
            updated = gemm(
                -rate * self._scales[layer], inputs[layer], delta, beta=1.0,
                c=weight.T, trans_a=True, overwrite_c=True,
            )
            if not np.shares_memory(updated, weight):  # pragma: no cover
                weight[...] = updated.T
            self.biases[layer] -= self.dtype.type(rate * self.beta) * delta.sum(axis=0)


class FiniteNetworkRegressor(RegressorMixin, BaseEstimator):
    """A finite network trained by gradient descent, as a scikit-learn regressor.

    Draws a :class:`Network` and trains all its layers by full-batch
    gradient descent on the least-squares cost for ``round(t)`` steps of size
    ``learning_rate``.  This is one random realisation of what
    ``NTKRegressor`` with the same parameters describes in the
    infinite-width limit: its mean over ``random_state`` tends to
    ``NTKRegressor(...).predict(X)`` and its spread to the ``return_std``
    of that prediction.

    Parameters
    ----------
    depth : int, default=3
        Number of dense layers L >= 1.
    width : int, default=512
        Units per hidden layer.
    activation : str or callable, default="relu"
        Activation of the hidden layers (see :class:`Network`).
    beta : float, default=0.1
        Bias multiplier β >= 0.
    weight_std : float, default=1.0
        Weight multiplier σ_w > 0.
    learning_rate : float, default=1.0
        Step size η > 0.
    t : float, default=100.0
        Training time in steps; ``round(t)`` steps are taken, which follows
        the gradient flow to time η·t (the time scale of ``NTKRegressor``).
    random_state : int, RandomState instance or None, default=None
        Draws the initial parameters.

    Attributes
    ----------
    network_ : Network
        The trained network.
    n_iter_ : int
        Number of gradient steps taken.
    n_features_in_ : int
        Number of features seen during fit.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntk.finite import FiniteNetworkRegressor
    >>> angles = np.array([0.0, 1.5, 3.0, 4.5])
    >>> X = np.c_[np.cos(angles), np.sin(angles)]
    >>> y = np.sin(2 * angles)
    >>> reg = FiniteNetworkRegressor(depth=3, width=256, t=1000, random_state=0)
    >>> reg.fit(X, y).score(X, y) > 0.99
    True
    """

    _parameter_constraints = {
        **NETWORK_PARAMETER_CONSTRAINTS,
        "width": [positive_integer()],
        "learning_rate": [positive_real()],
        # Finite (np.inf is refused): round(t) gradient steps are taken.
        "t": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        depth=3,
        width=512,
        activation="relu",
        beta=0.1,
        weight_std=1.0,
        learning_rate=1.0,
        t=100.0,
        random_state=None,
    ):
        self.depth = depth
        self.width = width
        self.activation = activation
        self.beta = beta
        self.weight_std = weight_std
        self.learning_rate = learning_rate
        self.t = t
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Draw a network and train it by gradient descent.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs; their number of features is the network's n_0.
        y : array-like of shape (n_samples,)
            Training targets.

        Returns
        -------
        self : FiniteNetworkRegressor
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self.network_ = Network(
            X.shape[1], depth=self.depth, width=self.width,
            activation=self.activation, beta=self.beta,
            weight_std=self.weight_std, random_state=self.random_state,
        )
        self.n_iter_ = int(round(self.t))
        self.network_.fit(X, y, learning_rate=self.learning_rate, n_steps=self.n_iter_)
        return self

    def predict(self, X):
        """Output of the trained network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test inputs, with as many features as at fit.

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.network_.predict(X)
