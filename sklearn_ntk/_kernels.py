"""The NTK and NNGP kernels as :mod:`sklearn.gaussian_process` kernels."""

import numbers

import numpy as np
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array

from ._activations import ACTIVATIONS, check_depth, get_activation
from ._recursion import diagonal, kernel_matrices


def _check_std(value, name, allow_zero):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")
    return float(value)


#: ``_parameter_constraints`` of the network hyperparameters, shared by every
#: estimator and transformer (the kernels validate with check_network_params).
NETWORK_PARAMETER_CONSTRAINTS = {
    "depth": [Interval(numbers.Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(ACTIVATIONS)), callable],
    "beta": [Interval(numbers.Real, 0, None, closed="left")],
    "weight_std": [Interval(numbers.Real, 0, None, closed="neither")],
}


def check_network_params(depth, activation, beta, weight_std):
    """Validate the network hyperparameters shared by kernels and estimators.

    Returns
    -------
    depth : int
    activation : Activation
    beta, weight_std : float
    """
    return (
        check_depth(depth),
        get_activation(activation),
        _check_std(beta, "beta", allow_zero=True),
        _check_std(weight_std, "weight_std", allow_zero=False),
    )


class _InfiniteWidthKernel(Kernel):
    """Shared implementation of :class:`NTK` and :class:`NNGP`."""

    _kind = None

    def __init__(
        self,
        depth=3,
        activation="relu",
        beta=0.1,
        weight_std=1.0,
        beta_bounds=(1e-5, 1e5),
        weight_std_bounds=(1e-5, 1e5),
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
        depth, activation, beta, weight_std = check_network_params(
            self.depth, self.activation, self.beta, self.weight_std
        )
        X = check_array(X, dtype=np.float64, input_name="X")
        if Y is not None:
            Y = check_array(Y, dtype=np.float64, input_name="Y")
            if Y.shape[1] != X.shape[1]:
                raise ValueError(
                    f"X has {X.shape[1]} features but Y has {Y.shape[1]}; "
                    "they must have the same number of features."
                )
        return X, Y, dict(depth=depth, activation=activation, beta=beta,
                          weight_std=weight_std)

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
        activation = self.activation
        if not isinstance(activation, str):
            activation = getattr(activation, "__name__", repr(activation))
        return (
            f"{type(self).__name__}(depth={self.depth}, activation={activation!r}, "
            f"beta={self.beta:.3g}, weight_std={self.weight_std:.3g})"
        )


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
        "relu", "leaky_relu" (slope 0.01), "abs", "erf", "identity",
        "gelu" (exact x·Φ(x)), "sin", "cos" use closed forms; "tanh",
        "sigmoid", "softplus" or a vectorised callable (smooth, or with
        kinks at 0) use a Hermite series with an exact error bound and,
        where it would be slow, nested quadrature: at every pre-activation
        variance, each layer's expectations are accurate to 1e-10 relative
        and their gradients to 1e-9 (1e-7 for a kinked callable, whose
        derivatives come from finite differences).
    beta : float, default=0.1
        Standard deviation of the biases (β >= 0). With beta = 0 the
        hyperparameter is fixed (log-scale optimisation cannot leave 0).
    weight_std : float, default=1.0
        Standard deviation multiplier of the weights (σ_w > 0).
    beta_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds on beta for hyperparameter optimisation.
    weight_std_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds on weight_std. The kernel grows like weight_std^(2·depth), so
        a first optimiser step towards these wide bounds can overflow; for
        GaussianProcessRegressor's optimiser, bounds such as (0.1, 10) are
        safer.
    n_jobs : int, default=None
        Number of joblib workers (threads) over the tiles of the Gram
        matrix; any joblib backend set with ``joblib.parallel_config``
        applies.

    Notes
    -----
    The hyperparameter vector ``theta`` is ``[log(beta), log(weight_std)]``
    (fixed entries removed), and ``K_gradient[..., i]`` is the exact
    derivative with respect to ``theta[i]``.

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
    >>> gpr = GaussianProcessRegressor(kernel=kernel).fit(X, [0.0, 1.0])
    >>> gpr.predict(X).round(6)
    array([0., 1.])
    """

    _kind = "ntk"


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
    weight_std : float, default=1.0
        Standard deviation multiplier of the weights (σ_w > 0).
    beta_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds on beta for hyperparameter optimisation.
    weight_std_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds on weight_std; as for :class:`NTK`, narrower bounds such as
        (0.1, 10) suit GaussianProcessRegressor's optimiser.
    n_jobs : int, default=None
        Number of joblib workers (threads) over the tiles of the Gram matrix.

    Notes
    -----
    ``theta`` is ``[log(beta), log(weight_std)]`` (fixed entries removed).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.svm import SVR
    >>> from sklearn_ntk import NNGP
    >>> X = np.array([[1.0, 0.0], [np.cos(1.0), np.sin(1.0)]])
    >>> NNGP(depth=4, beta=0.1)(X).round(6)
    array([[0.08125 , 0.065454],
           [0.065454, 0.08125 ]])
    >>> SVR(kernel=NNGP(depth=2)).fit(X, [0.0, 1.0]).predict(X).shape
    (2,)
    """

    _kind = "nngp"
