"""The NTK and NNGP kernels as :mod:`sklearn.gaussian_process` kernels.

This module owns the kernels' contract with scikit-learn: hyperparameters
(``beta`` and ``weight_std`` on a log scale, their bounds), ``__call__``
with gradients, ``diag``, and :func:`kernels_by_depth`, the Gram matrices of
every depth from one pass.  The values come from ``_recursion``.
"""

import numpy as np
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel
from sklearn.utils.validation import check_array

from ._activations import get_activation
from ._parameters import (
    activation_name,
    check_parameters,
    fill_docstring,
    public_init,
)
from ._recursion import diagonal, kernel_matrices


def _check_inputs(X, Y):
    """X and Y (or None) as float64 arrays with the same number of features."""
    X = check_array(X, dtype=np.float64, input_name="X")
    if Y is not None:
        Y = check_array(Y, dtype=np.float64, input_name="Y")
        if Y.shape[1] != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features but Y has {Y.shape[1]}; "
                "they must have the same number of features."
            )
    return X, Y


@fill_docstring
def kernels_by_depth(X, Y=None, *, depth=3, activation="relu", beta=0.1,
                     weight_std=1.0, n_jobs=None):
    """NNGP and NTK Gram matrices of every depth 1..depth, from one pass.

    The recursion computes depth l on its way to depth l + 1, so a search over
    ``depth`` (e.g. with ``SVC(kernel="precomputed")``) needs one pass at the
    largest depth instead of one per depth and kernel.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
    Y : array-like of shape (n_samples_Y, n_features), default=None
        None means Y = X (and only the upper triangle is computed).
    depth : int, default=3
        The largest depth L >= 1.
    activation : str or callable, default="relu"
        As for :class:`NTK`.
    %(beta)s
    %(weight_std)s
    %(n_jobs)s

    Returns
    -------
    nngp : ndarray of shape (depth, n_samples_X, n_samples_Y)
        ``nngp[l - 1]`` equals ``NNGP(depth=l, ...)(X, Y)``.
    ntk : ndarray of shape (depth, n_samples_X, n_samples_Y)
        ``ntk[l - 1]`` equals ``NTK(depth=l, ...)(X, Y)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_ntk import NTK, kernels_by_depth
    >>> X = np.array([[1.0, 0.0], [np.cos(1.0), np.sin(1.0)]])
    >>> nngp, ntk = kernels_by_depth(X, depth=4)
    >>> ntk.shape
    (4, 2, 2)
    >>> bool(np.array_equal(ntk[2], NTK(depth=3)(X)))
    True
    """
    check_parameters("kernels_by_depth", depth=depth, activation=activation,
                     beta=beta, weight_std=weight_std, n_jobs=n_jobs)
    X, Y = _check_inputs(X, Y)
    kernels = kernel_matrices(
        X, Y, depth=depth, activation=get_activation(activation), beta=beta,
        weight_std=weight_std, kernel="both", all_depths=True, n_jobs=n_jobs,
    )
    return kernels.nngp, kernels.ntk


#: The numpydoc entry of the kernels' own parameters: the search box of
#: hyperparameter optimisation.
_KERNEL_PARAMETER_DOCS = {
    "bounds": """beta_bounds : pair of floats >= 0 or "fixed", default=(1e-2, 1e1)
    Bounds on beta for hyperparameter optimisation. Below 0.01 a bias
    adds less than 1e-4 to the variance of a standardised input; up to
    10 the kernel stays positive definite with any noise level of
    WhiteKernel's default bounds, also where the bias dominates.
weight_std_bounds : pair of floats >= 0 or "fixed", default=(1e-1, 1e1)
    Bounds on weight_std. The kernel scales like
    :math:`\\sigma_w^{2L}` (weight_std to the power 2 · depth; exactly
    so for relu-like activations with beta = 0), so these
    bounds span kernel amplitudes from 1e-6 to 1e6 at depth 3 and keep
    the kernel representable at every depth up to 10 at least.""",
}


class _InfiniteWidthKernel(Kernel):
    """Shared implementation of :class:`NTK` and :class:`NNGP`.

    The public kernels share this ``__init__`` through
    :func:`~sklearn_ntk._parameters.public_init`, so that errors about
    parameters name them, not this class.

    Why the default bounds are narrow: GaussianProcessRegressor's L-BFGS-B
    takes a first step of the full gradient, which on data whose scale does
    not match the kernel's lands on a corner of the box; if K + noise is not
    positive definite there, the log marginal likelihood is -inf with a zero
    gradient and the optimiser stops where it started, without a warning.
    So every corner must give a usable kernel.  weight_std in [0.1, 10]
    brackets the critical values (sqrt(2) for relu, about 1 for erf); as the
    kernel scales like weight_std^(2 depth), this spans 1e-6 to 1e6 at
    depth 3, ConstantKernel's range, and stays representable at depth 10.
    beta in [0.01, 10]: at the corner (beta=10, weight_std=0.1) the bias
    dominates and rounding erases most of the inputs' contribution; beta^2 <=
    100 keeps that near-constant matrix within 1e7 of WhiteKernel's smallest
    noise level 1e-5, so the Cholesky factorisation still succeeds (with
    beta <= 100 it failed on the diabetes data at depth 6).  Below 0.01 the
    bias adds under 1e-4 to the variance of a standardised input; beta=0
    removes it exactly.
    """

    _kind = None

    def __init__(
        self,
        depth=3,
        activation="relu",
        beta=0.1,
        weight_std=1.0,
        beta_bounds=(1e-2, 1e1),
        weight_std_bounds=(1e-1, 1e1),
        n_jobs=None,
    ):
        self.depth = depth
        self.activation = activation
        self.beta = beta
        self.weight_std = weight_std
        self.beta_bounds = beta_bounds
        self.weight_std_bounds = weight_std_bounds
        self.n_jobs = n_jobs

    @property
    def hyperparameter_beta(self):
        # log(0) is not a point of the log-scale search space: a network
        # without biases keeps beta = 0 fixed.
        bounds = "fixed" if self.beta == 0 else self.beta_bounds
        return Hyperparameter("beta", "numeric", bounds)

    @property
    def hyperparameter_weight_std(self):
        return Hyperparameter("weight_std", "numeric", self.weight_std_bounds)

    def _validate(self, X, Y):
        check_parameters(type(self).__name__, depth=self.depth,
                         activation=self.activation, beta=self.beta,
                         weight_std=self.weight_std, n_jobs=self.n_jobs)
        X, Y = _check_inputs(X, Y)
        return X, Y, dict(depth=self.depth, activation=get_activation(self.activation),
                          beta=self.beta, weight_std=self.weight_std)

    def __call__(self, X, Y=None, eval_gradient=False):
        """Return the kernel k(X, Y) and optionally its gradient.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        Y : array-like of shape (n_samples_Y, n_features), default=None
            If None, k(X, X) is evaluated.
        eval_gradient : bool, default=False
            Also return the gradient with respect to the log of the
            non-fixed hyperparameters (order: beta, weight_std). Only
            supported when Y is None.

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y)
        K_gradient : ndarray of shape (n_samples_X, n_samples_X, n_dims)
            Only returned when ``eval_gradient`` is True.
        """
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        X, Y, params = self._validate(X, Y)
        result = kernel_matrices(
            X, Y, kernel=self._kind, eval_gradient=eval_gradient,
            n_jobs=self.n_jobs, **params,
        )
        K = getattr(result, self._kind)
        if not eval_gradient:
            return K
        gradient = getattr(result, self._kind + "_gradient")
        free = [not hyperparameter.fixed for hyperparameter in self.hyperparameters]
        if all(free):
            return K, gradient
        return K, np.ascontiguousarray(gradient[..., free])

    def diag(self, X):
        """Return the diagonal k(X, X)[i, i] in O(n) time and memory.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points x_i.

        Returns
        -------
        K_diag : ndarray of shape (n_samples,)
        """
        X, _, params = self._validate(X, None)
        return getattr(diagonal(X, **params), self._kind)[-1]

    def is_stationary(self):
        """Return False: the kernel depends on the inputs, not their difference."""
        return False

    def __repr__(self):
        return (
            f"{type(self).__name__}(depth={self.depth}, "
            f"activation={activation_name(self.activation)!r}, "
            f"beta={self.beta:.3g}, weight_std={self.weight_std:.3g})"
        )


def _public_kernel(cls):
    """A public kernel: its own ``__init__`` and its shared parameter entries."""
    return public_init(fill_docstring(cls, _KERNEL_PARAMETER_DOCS))


@_public_kernel
class NTK(_InfiniteWidthKernel):
    """Neural Tangent Kernel of an infinitely wide fully-connected network.

    The kernel Θᴸ of Jacot, Gabriel & Hongler (2018) for a network of
    ``depth`` dense layers in NTK parametrization, each layer computing
    ``weight_std / sqrt(n) * W a + beta * b`` with standard normal W and b.
    A network trained by gradient flow on the squared loss follows kernel
    gradient descent with this kernel; kernel regression with it is the
    converged network's mean prediction.

    Parameters
    ----------
    depth : int, default=3
        Number of dense layers L >= 1 (L - 1 hidden activations); depth 1
        is the linear model.
    activation : str or callable, default="relu"
        %(closed_form_activations)s
        use closed forms ("leaky_relu" has slope 0.01 for x < 0, "gelu" is
        the exact x·Φ(x));
        %(numerical_activations)s
        or a vectorised callable (smooth, or with
        kinks at 0) use a Hermite series with an exact error bound and,
        where it would be slow, nested quadrature: at every pre-activation
        variance, each layer's expectations are accurate to 1e-10 relative
        and their gradients to 1e-9 (1e-7 for a kinked callable, whose
        derivatives come from finite differences).
    beta : float, default=0.1
        Standard deviation of the biases (β >= 0). With beta = 0 the
        hyperparameter is fixed (log-scale optimisation cannot leave 0).
    %(weight_std)s
    %(bounds)s
    %(n_jobs)s

    See Also
    --------
    NNGP : The prior covariance of the same network.

    Notes
    -----
    The hyperparameter vector ``theta`` is ``[log(beta), log(weight_std)]``
    (fixed entries removed), and ``K_gradient[..., i]`` is the exact
    derivative with respect to ``theta[i]``.

    **Gaussian-process regression.** The kernel is the covariance of a
    network output with mean 0: the bias (β² ≤ 100 by default) has to
    account for the targets' mean and weight_std for their scale.
    Standardise the inputs, and pass ``normalize_y=True`` to
    :class:`~sklearn.gaussian_process.GaussianProcessRegressor` unless the
    targets' mean and standard deviation are at most about 10 in absolute
    value (the optimiser then ends at a bound with a ConvergenceWarning).
    The default bounds keep K + noise positive definite on every corner of
    the search box, where L-BFGS-B takes its first step.

    **Redundant hyperparameters.** For positively homogeneous activations,
    :math:`\\sigma(a u) = a \\sigma(u)` for :math:`a > 0` ("relu",
    "leaky_relu", "abs", "identity"), both kernels satisfy, for every
    :math:`c > 0` and every depth,

    .. math::

        c\\, K(x, x'; \\beta, \\sigma_w)
        = K(\\sqrt c\\, x, \\sqrt c\\, x'; \\sqrt c\\, \\beta, \\sigma_w),

    so a ConstantKernel factor only rescales the inputs. With ``beta=0``
    it is exactly a change of weight_std,
    :math:`c\\, K(\\sigma_w) = K(c^{1/(2L)} \\sigma_w)`; at depth 1 (any
    activation) :math:`c\\, K(\\beta, \\sigma_w) = K(\\sqrt c\\, \\beta,
    \\sqrt c\\, \\sigma_w)`, and for
    "identity" (a linear network at every depth) it is redundant for every
    β. For relu-like activations leave ConstantKernel out: weight_std sets
    the scale, and the extra input scale drives the product to a bound of
    its search. For "erf", "tanh", "sigmoid", "sin", "cos", "gelu",
    "softplus" or a callable, weight_std also sets how far pre-activations
    reach into the nonlinearity, so a ConstantKernel factor is a separate
    amplitude and not redundant.

    The Hermite expansion of "tanh", "sigmoid", "softplus" and callables
    raises an error for pre-activation variances above a few tens (about
    30 for tanh); narrow both bounds before optimising them (for tanh on
    standardised inputs, (0.01, 2) works).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.gaussian_process import GaussianProcessRegressor
    >>> from sklearn_ntk import NTK
    >>> X = np.array([[1.0, 0.0], [np.cos(1.0), np.sin(1.0)]])
    >>> kernel = NTK(depth=4, beta=0.1)
    >>> kernel(X).round(6)
    array([[0.2825  , 0.143077],
           [0.143077, 0.2825  ]])
    >>> kernel.diag(X)
    array([0.2825, 0.2825])
    >>> gpr = GaussianProcessRegressor(kernel=kernel, optimizer=None)
    >>> gpr.fit(X, [0.0, 1.0]).predict(X).round(6)
    array([0., 1.])
    """

    _kind = "ntk"


@_public_kernel
class NNGP(_InfiniteWidthKernel):
    """NNGP kernel: the prior covariance of an infinitely wide network.

    The kernel Σᴸ of the Gaussian process that a randomly initialised
    network of ``depth`` dense layers in NTK parametrization converges to as
    its widths grow (Neal 1996, Lee et al. 2018). Training only the readout
    layer by gradient flow is kernel gradient descent with this kernel, and
    Gaussian process regression with it is the Bayesian posterior of the
    infinite network.

    Parameters
    ----------
    depth : int, default=3
        Number of dense layers L >= 1; depth 1 is the linear kernel.
    activation : str or callable, default="relu"
        As for :class:`NTK`.
    beta : float, default=0.1
        Standard deviation of the biases (β >= 0). With beta = 0 the
        hyperparameter is fixed.
    %(weight_std)s
    %(bounds)s
    %(n_jobs)s

    See Also
    --------
    NTK : The kernel of the same network trained in all its layers.

    Notes
    -----
    ``theta`` is ``[log(beta), log(weight_std)]`` (fixed entries removed).

    As the prior of a Gaussian process, use it without a ConstantKernel
    factor for relu-like activations (one is redundant with weight_std and
    the inputs' scale) and with ``normalize_y=True`` unless the targets'
    mean and standard deviation are at most about 10: see the Notes of
    :class:`NTK`. For erf, tanh, sin and other non-homogeneous activations
    a ConstantKernel factor is a separate amplitude (with erf and depth
    >= 2 the NNGP kernel never exceeds weight_std² + beta²).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.gaussian_process import GaussianProcessRegressor
    >>> from sklearn.gaussian_process.kernels import WhiteKernel
    >>> from sklearn.svm import SVR
    >>> from sklearn_ntk import NNGP
    >>> X = np.array([[1.0, 0.0], [np.cos(1.0), np.sin(1.0)]])
    >>> NNGP(depth=4, beta=0.1)(X).round(6)
    array([[0.08125 , 0.065454],
           [0.065454, 0.08125 ]])
    >>> SVR(kernel=NNGP(depth=2)).fit(X, [0.0, 1.0]).predict(X).shape
    (2,)
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 3))
    >>> y = 20.0 + 5.0 * np.sin(X[:, 0]) + 0.5 * rng.standard_normal(50)
    >>> gpr = GaussianProcessRegressor(NNGP() + WhiteKernel(), normalize_y=True)
    >>> bool(gpr.fit(X, y).score(X, y) > 0.9)
    True
    """

    _kind = "nngp"
