"""Random features of the NNGP and NTK kernels: a random finite network.

The paper's own way to approximate the limiting kernels is to draw a random
network and read off its features: in NTK parametrization, the empirical
kernels of a network whose hidden layers all have width m converge to Σᴸ and
Θᴸ as m grows.  The samplers below are those features, as
:mod:`sklearn.kernel_approximation` transformers:

- :class:`NNGPSampler` returns the readout layer's inputs
  ``[σ_w σ(α̃ᴸ⁻¹(x)) / √m, β]``, whose inner product is the empirical NNGP
  kernel σ_w² σ(α̃)·σ(α̃')/m + β².
- :class:`NTKSampler` returns the network's parameter gradient, compressed.
  The empirical NTK is a sum over layers h of
  ``[ã^{h-1}(x)·ã^{h-1}(x')] [δʰ(x)·δʰ(x')]`` (user guide, "Finite networks and the empirical NTK"),
  the inner product of the outer products ``ã ⊗ δ`` (the gradient with
  respect to layer h's weights and bias).  Those have (m + 1)·m entries,
  far too many, so each is sketched with a product of two Gaussian
  projections, ``(Gᵀã) ⊙ (Hᵀδ) / √D_h``, which preserves the inner product
  in expectation; the readout term (δᴸ = 1) is kept as it is.

Both are unbiased for the finite network (the sketch is unbiased for any
fixed network), so the expectation over draws equals the expectation of the
empirical kernel of a width-m network: exactly the infinite-width kernel for
depth <= 2, and the infinite-width kernel plus an O(1/m) bias for deeper
networks (the next layer sees the empirical, not the exact, covariance of the
previous one).  The bias is measured in the tests and stated in the
docstrings; it is small next to the O(1/√m) spread of one draw.

This module owns the drawing of those networks and sketches and the
layout of the features; the forward pass and backpropagation are those of
:mod:`sklearn_ntk.finite`, the one implementation of the package.
"""

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.validation import check_is_fitted, validate_data

from ._activations import get_activation
from ._parameters import (
    NETWORK_PARAMETER_CONSTRAINTS,
    fill_docstring,
    positive_integer,
    public_init,
)
from ._range import checked_range, range_error
from .finite import _DenseLayers

#: Rows per batch of ``transform``: every hidden layer's activations (and, for
#: the NTK, its back-propagated gradients) are held for one batch only, so the
#: working memory beyond the output stays at a few tens of MB.
_BATCH_BYTES = 64 * 2**20


def _orthogonal_gaussian(random_state, n_rows, n_columns, norms):
    """An (n_rows, n_columns) matrix whose columns are each marginally N(0, I).

    Columns come in blocks of n_rows mutually orthogonal directions
    (orthogonal random features, Yu et al. 2016): the same expectations as
    i.i.d. Gaussian columns, with less variance.  With ``norms="chi"`` the
    lengths are those of Gaussian vectors, so every column is exactly
    N(0, I) (needed under a nonlinearity); with ``norms="fixed"`` they are
    all √n_rows, which keeps E[G Gᵀ] = n_columns · I (all a linear sketch
    needs) and makes each complete block preserve inner products exactly.
    """
    blocks = []
    for start in range(0, n_columns, n_rows):
        size = min(n_rows, n_columns - start)
        # Reduced QR: only `size` orthonormal columns, O(n_rows size²).
        q, r = np.linalg.qr(random_state.standard_normal((n_rows, size)))
        # Sign fix: Haar-distributed columns, whatever the QR convention.
        q *= np.sign(np.diag(r))
        blocks.append(q)
    directions = np.concatenate(blocks, axis=1)
    if norms == "chi":
        lengths = np.sqrt(random_state.chisquare(n_rows, size=n_columns))
    else:
        lengths = np.sqrt(n_rows)
    return directions * lengths


def _with_bias(activations, weight_std, beta):
    """ã = [σ_w a / √n, β] for the input a (n columns) of a layer.

    ã·ã' = σ_w² a·a'/n + β²: the inner product of the layer's gradients
    with respect to its weights and bias, per unit of back-propagated δ.
    """
    out = np.empty((activations.shape[0], activations.shape[1] + 1))
    np.multiply(activations, weight_std / np.sqrt(activations.shape[1]),
                out=out[:, :-1])
    out[:, -1] = beta
    return out


#: The numpydoc entries the two samplers share (see ``fill_docstring``).
_SAMPLER_DOCS = {
    "sampler_depth": """depth : int, default=3
    Number of dense layers L >= 1, as in the kernel approximated.
    Depth 1 (the linear kernel) is a Gaussian projection of
    ``[weight_std · x / √n_features, beta]``.""",
    "sampler_attributes": """random_weights_ : list of ndarray of shape (fan_in, m)
    Standard normal weights of the depth - 1 hidden layers of width m
    (the first has fan_in = ``n_features_in_``); the layer computes
    ``weight_std / √fan_in · a @ W + beta · b``.
random_biases_ : list of ndarray of shape (m,)
    Standard normal biases b of the hidden layers.
projection_ : ndarray of shape (n_network_features, n_components) or None
    For depth 1 (n_network_features = n_features_in_ + 1) or a very small
    n_components: the orthogonal Gaussian projection applied to the
    network's features; None otherwise.
n_features_in_ : int
    Number of features seen during :term:`fit`.
feature_names_in_ : ndarray of shape (`n_features_in_`,)
    Names of features seen during :term:`fit`. Defined only when `X`
    has feature names that are all strings.""",
}


def _public_sampler(cls):
    """A public sampler: its own ``__init__`` and the shared entries."""
    return public_init(fill_docstring(cls, _SAMPLER_DOCS))


class _RandomNetworkFeatures(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Shared parameters, validation, drawing and batching of the samplers.

    A subclass says how many features its network has (``_min_components``,
    ``_hidden_width``), draws what it needs beyond the hidden layers
    (``_draw_extra``), builds the network's layers (``_layers``) and
    computes its features from them (``_features``, for depth >= 2).
    """

    _parameter_constraints: dict = {
        **NETWORK_PARAMETER_CONSTRAINTS,
        "n_components": [positive_integer()],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        depth=3,
        activation="relu",
        beta=0.1,
        weight_std=1.0,
        n_components=100,
        random_state=None,
    ):
        self.depth = depth
        self.activation = activation
        self.beta = beta
        self.weight_std = weight_std
        self.n_components = n_components
        self.random_state = random_state

    def _draw_extra(self, random_state, depth, n_features, size):
        """Draw the random quantities a subclass needs beyond the hidden layers."""

    def _layers(self, readout_weights=None):
        """The network drawn at fit, with σ, β and σ_w as they were then.

        Its hidden layers and, if ``readout_weights`` are given, a readout
        with those weights as its top layer (with bias 0: no feature
        depends on the readout's bias).
        """
        weights = [weight.T for weight in self.random_weights_]
        biases = list(self.random_biases_)
        if readout_weights is not None:
            weights.append(readout_weights[None, :])
            biases.append(np.zeros(1))
        return _DenseLayers(weights, biases, self._activation, self._beta,
                            self._weight_std, np.float64)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Draw the random network (and sketches) for inputs like X.

        Only the number of features of X is used.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        X = validate_data(self, X, dtype=np.float64)
        # The network is fixed at fit, as its random weights are: set_params
        # after fit must not mix a new beta (or activation, or number of
        # features) with the old weights.
        depth, self._activation = self.depth, get_activation(self.activation)
        self._beta, self._weight_std = float(self.beta), float(self.weight_std)
        random_state = check_random_state(self.random_state)
        n_features = X.shape[1]
        # The network's own features have at least _min_components(depth)
        # entries; a smaller n_components projects them down (as depth 1
        # always does), which keeps E[φ(x)·φ(y)] and costs accuracy only.
        if depth == 1:
            size = n_features + 1
        else:
            size = max(self.n_components, self._min_components(depth))
        width = self._hidden_width(depth, size)
        fan_ins = ([n_features] + [width] * (depth - 2))[: depth - 1]
        # Weights and biases are stored as standard normal draws; the NTK
        # parametrization's σ_w/√fan_in and β are applied in transform.
        # Orthogonal random features: the same expectations as i.i.d. units
        # and measurably less variance (relu, depth 3, 1000 features: 0.064
        # against 0.089 relative error for the NNGP, 0.14 against 0.17 for
        # the NTK).  Their O(width³) QR is less than one transform of
        # width samples.
        self.random_weights_ = [
            _orthogonal_gaussian(random_state, fan_in, width, "chi")
            for fan_in in fan_ins
        ]
        self.random_biases_ = [random_state.standard_normal(width) for _ in fan_ins]
        self.projection_ = None
        if size != self.n_components:
            # For depth 1 (the linear kernel) the features are a projection
            # of [σ_w x/√n0, β]: exact for whole orthogonal blocks.
            self.projection_ = _orthogonal_gaussian(
                random_state, size, self.n_components, "fixed"
            )
        self._draw_extra(random_state, depth, n_features, size)
        self._n_features_out = self.n_components
        return self

    def transform(self, X):
        """Map X to the random features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            The features; ``X_new @ Y_new.T`` approximates the kernel. Same
            dtype as X (float32 or float64; other inputs become float64).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        # float32 input gives float32 features: each batch is computed in
        # float64 and rounded on output (relative 6e-8, far below the sampling
        # error of the features), halving the memory of the features and of
        # any linear model fitted on them.
        n_out = self._n_features_out
        out = np.empty((X.shape[0], n_out), dtype=X.dtype)
        widths = [w.shape[1] for w in self.random_weights_]
        size = n_out if self.projection_ is None else len(self.projection_)
        row_bytes = 8 * (X.shape[1] + 3 * sum(widths) + size + n_out + 1)
        batch_size = max(1, _BATCH_BYTES // row_bytes)
        # Depth 1 has no hidden layer: its features are the input's ã.
        layers = self._layers() if self.random_weights_ else None
        # Features grow like the inputs (relu: in proportion): beyond the
        # range of the output dtype the forward pass overflows, which is
        # reported, and never returned as inf.
        range_args = ((X,), self._beta, self._weight_std)
        with checked_range("The random features", *range_args):
            for batch in gen_batches(X.shape[0], batch_size):
                X_batch = X[batch].astype(np.float64)
                if self.projection_ is None:
                    self._features(layers, X_batch, out[batch])
                    continue
                if self.random_weights_:
                    features = np.empty((len(X_batch), size))
                    self._features(layers, X_batch, features)
                else:  # depth 1: the input layer's [σ_w x / √n0, β]
                    features = _with_bias(X_batch, self._weight_std, self._beta)
                out[batch] = features @ self.projection_ / np.sqrt(n_out)
        # Casts on assignment and user activations need not raise: check.
        if not np.all(np.isfinite(out)):
            raise range_error(
                f"The random features are not representable in {out.dtype}",
                *range_args,
            )
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


@_public_sampler
class NNGPSampler(_RandomNetworkFeatures):
    """Random features of the NNGP kernel: the readout inputs of a random network.

    Draws one fully-connected network of ``depth`` layers in NTK
    parametrization with hidden width m = ``n_components - 1`` and returns, for
    each sample x, the input of its readout layer,
    ``φ(x) = [weight_std · σ(α̃ᴸ⁻¹(x)) / √m, beta]``.  Then
    ``φ(x)·φ(y)`` is the network's empirical NNGP kernel, which converges to
    ``NNGP(depth, activation, beta, weight_std)(x, y)`` as m grows: a linear
    model on these features approximates Gaussian process or kernel ridge
    regression with the :class:`~sklearn_ntk.NNGP` kernel, in time linear in
    the number of samples.

    Accuracy: for ``depth <= 2`` the features are unbiased,
    E[φ(x)·φ(y)] = Σᴸ(x, y) exactly; deeper networks add a bias of order
    1/n_components (the next layer sees the sampled, not the exact,
    covariance of the previous one), for relu at depth 3 below what 600
    draws resolve (about 1 % of the kernel) at n_components = 50 and
    200.  The spread of one draw falls like 1 / sqrt(n_components): on 40
    standard normal points in 5 dimensions, relu, depth 3, the relative
    Frobenius error ‖Φ Φᵀ − K‖/‖K‖ is about 0.064 at n_components = 1000
    (median of 5 draws; 0.056 at depth 2, 0.002 at depth 1), and 0.32 and
    0.16 at n_components = 50 and 200 on 15 points in 4 dimensions.

    Parameters
    ----------
    %(sampler_depth)s
    activation : str or callable, default="relu"
        Any activation of :class:`~sklearn_ntk.NNGP`; a callable is applied
        elementwise.
    %(beta)s
    %(weight_std)s
    n_components : int, default=100
        Number of features: the hidden width plus one constant feature
        ``beta`` (with n_components = 1 a width-1 network's two features
        are projected to one).
    random_state : int, RandomState instance or None, default=None
        Draws the network's weights. Pass an int for reproducible features.

    Attributes
    ----------
    %(sampler_attributes)s

    See Also
    --------
    NTKSampler : Random features of the Neural Tangent Kernel.
    sklearn_ntk.NNGP : The exact kernel.
    sklearn.kernel_approximation.Nystroem : Works with ``kernel=NNGP(...)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntk import NNGP, NNGPSampler
    >>> X = np.random.RandomState(0).normal(size=(50, 3))
    >>> sampler = NNGPSampler(depth=3, n_components=2000, random_state=0)
    >>> features = sampler.fit_transform(X)
    >>> features.shape
    (50, 2000)
    >>> K = NNGP(depth=3)(X)
    >>> error = np.linalg.norm(features @ features.T - K) / np.linalg.norm(K)
    >>> bool(error < 0.1)
    True
    """

    def _min_components(self, depth):
        return 2

    def _hidden_width(self, depth, size):
        return 0 if depth == 1 else size - 1

    def _features(self, layers, X, out):
        hidden, _, _ = layers._forward(X, len(layers.weights), keep=False)
        out[...] = _with_bias(hidden, self._weight_std, self._beta)


@_public_sampler
class NTKSampler(_RandomNetworkFeatures):
    """Random features of the Neural Tangent Kernel: a random network's gradient.

    Draws one fully-connected network of ``depth`` layers in NTK
    parametrization, of hidden width m ≈ n_components / depth, and returns
    its gradient with respect to all parameters, compressed to
    ``n_components`` numbers.  The empirical NTK of the network is
    ``Σ_h [ãʰ⁻¹(x)·ãʰ⁻¹(y)] [δʰ(x)·δʰ(y)]`` over the layers h, with ãʰ⁻¹
    the input of layer h (and its bias coordinate β) and δʰ the output's
    gradient with respect to its pre-activations.  The readout term
    (δᴸ = 1) is kept exactly (m + 1 features); each hidden layer's outer
    product ``ã ⊗ δ`` is sketched to about n_components / depth features
    ``(Gᵀã) ⊙ (Hᵀδ) / √D`` with Gaussian G and H, which preserves inner
    products in expectation.  Then ``φ(x)·φ(y)`` approximates
    ``NTK(depth, activation, beta, weight_std)(x, y)``: a linear model on
    these features approximates the infinitely wide network trained by
    gradient flow (kernel regression with the NTK), in time linear in the
    number of samples.

    Accuracy: the sketch is unbiased for the drawn network, and for
    ``depth <= 2`` the network's empirical NTK is itself unbiased, so
    E[φ(x)·φ(y)] = Θᴸ(x, y) exactly; deeper networks add a bias of order
    1/n_components, for relu at depth 3 below what 600 draws resolve (about
    2 % of the kernel) at n_components = 50 and 200.  The spread of one
    draw falls like 1 / sqrt(n_components) (fitted slope -0.44): on 500
    standard normal points in 10 dimensions, relu, depth 3, the relative
    Frobenius error ‖Φ Φᵀ − K‖/‖K‖ is 0.53, 0.29, 0.18 and 0.12 at
    n_components = 100, 300, 1000 and 3000 (median of 3 draws;
    ``benchmarks/bench_scale.py``).  Nyström with ``kernel=NTK(...)`` is
    far more accurate per component on low-dimensional data.

    Parameters
    ----------
    %(sampler_depth)s
    activation : str or callable, default="relu"
        Any activation of :class:`~sklearn_ntk.NTK`; a callable is applied
        elementwise and differentiated numerically.
    %(beta)s
    %(weight_std)s
    n_components : int, default=100
        Number of features (below depth + 1, the features of the smallest
        network are projected to n_components).
    random_state : int, RandomState instance or None, default=None
        Draws the network's weights and the sketches. Pass an int for
        reproducible features.

    Attributes
    ----------
    width_ : int
        Width m of the hidden layers.
    readout_weights_ : ndarray of shape (``width_``,)
        Standard normal weights of the readout layer, through which the
        gradient is back-propagated.
    sketch_weights_ : list of tuple of ndarray
        For each hidden layer h = 1..depth - 1, the Gaussian matrices
        (G of shape (fan_in + 1, D_h), H of shape (width_, D_h)) that sketch
        the gradient with respect to that layer's weights and bias.
    %(sampler_attributes)s

    See Also
    --------
    NNGPSampler : Random features of the NNGP kernel.
    sklearn_ntk.NTK : The exact kernel.
    sklearn.kernel_approximation.Nystroem : Works with ``kernel=NTK(...)``.

    Notes
    -----
    This is the view of Jacot et al. (2018) that the NTK is approximated by a
    random finite network. Sharper constructions exist for relu
    (arc-cosine features with TensorSketch, Zandieh et al. 2021); this one
    works for every activation of the package.

    Examples
    --------
    A linear model on the features predicts about as well as kernel ridge
    regression with the NTK, in time linear in the number of samples:

    >>> import numpy as np
    >>> from sklearn.kernel_ridge import KernelRidge
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_ntk import NTK, NTKSampler
    >>> rng = np.random.default_rng(0)
    >>> X, X_test = rng.normal(size=(200, 3)), rng.normal(size=(50, 3))
    >>> y, y_test = np.sin(X[:, 0]), np.sin(X_test[:, 0])
    >>> features = make_pipeline(NTKSampler(n_components=1000, random_state=0),
    ...                          Ridge(alpha=0.1))
    >>> bool(features.fit(X, y).score(X_test, y_test) > 0.9)
    True
    >>> kernel = KernelRidge(kernel=NTK(), alpha=0.1)
    >>> bool(kernel.fit(X, y).score(X_test, y_test) > 0.9)
    True
    """

    @staticmethod
    def _layout(depth, size):
        """Hidden width and the sketch size of each hidden layer's term.

        The depth terms of the NTK share the size features about equally
        (measured: no other split was clearly better); the readout term
        gets the remainder (it has no sketch error).
        """
        if depth == 1:
            return 0, []
        share = size // depth
        width = size - (depth - 1) * share - 1
        return width, [share] * (depth - 1)

    def _min_components(self, depth):
        return depth + 1

    def _hidden_width(self, depth, size):
        return self._layout(depth, size)[0]

    def _draw_extra(self, random_state, depth, n_features, size):
        width, sizes = self._layout(depth, size)
        self.width_ = width
        self.readout_weights_ = random_state.standard_normal(width)
        fan_ins = ([n_features] + [width] * (depth - 2))[: depth - 1]
        self.sketch_weights_ = [
            (
                _orthogonal_gaussian(random_state, fan_in + 1, size, "fixed"),
                _orthogonal_gaussian(random_state, width, size, "fixed"),
            )
            for fan_in, size in zip(fan_ins, sizes)
        ]

    def _layers(self):
        # With the readout, through which the gradient is back-propagated.
        return super()._layers(self.readout_weights_)

    def _features(self, layers, X, out):
        readout = len(self.random_weights_)
        _, inputs, derivatives = layers._forward(X, readout, keep=True)
        start = out.shape[1]
        # Layers from the top, δ⁽ˡ⁺¹⁾ = ∂f/∂α̃⁽ˡ⁺¹⁾ (1 for the readout).
        for layer, delta in layers._backward(derivatives, np.ones((len(X), 1))):
            layer_input = _with_bias(inputs[layer], self._weight_std, self._beta)
            if layer == readout:
                # The readout term needs no sketch: its gradient is ã itself.
                start -= layer_input.shape[1]
                out[:, start:] = layer_input
                continue
            left, right = self.sketch_weights_[layer]
            size = left.shape[1]
            block = out[:, start - size : start]
            np.matmul(layer_input, left, out=block)
            block *= delta @ right
            block /= np.sqrt(size)
            start -= size
