"""Straightforward numpy baseline for the ReLU NTK / NNGP Gram matrix.

This is the "obvious" implementation a user would write from the recursion
below: full ``n x n`` arrays for every intermediate quantity, ``np.arccos`` for
the angle and ``np.sin`` for the arc-cosine kernel.  It is a benchmark baseline
and an independent cross-check, deliberately not optimised.

Recursion (``depth`` = L dense layers, weight std σ_w, bias std β)::

    Σ¹(x,x')   = σ_w² xᵀx'/n0 + β²                Θ¹ = Σ¹
    Σˡ⁺¹(x,x') = σ_w² (s/2π)(sin θ + (π − θ) cos θ) + β²
    Σ̇ˡ⁺¹(x,x') = σ_w² (π − θ)/(2π)
    Θˡ⁺¹       = Θˡ Σ̇ˡ⁺¹ + Σˡ⁺¹

with s = √(Σˡ(x,x) Σˡ(x',x')) and θ = arccos(Σˡ(x,x') / s), n0 the number of
input features.  This is the convention of the NTK paper (Jacot et al., 2018)
and of neural-tangents, where the bias variance β² enters the forward
covariance of every layer.  For x = (1, 0), x' = (cos 1, sin 1), β = 0.1,
σ_w = 1 it gives Θ⁴(x, x') = 0.143076689459114 (checked against
neural-tangents).
"""

import numpy as np


def relu_ntk_gram_naive(X, depth=4, beta=0.1, weight_std=1.0, bias_in_forward=True):
    """ReLU NTK and NNGP Gram matrices K(X, X) by the plain recursion.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Input points.
    depth : int, default=4
        Number of dense layers L (>= 1); depth 1 is the linear model.
    beta : float, default=0.1
        Bias standard deviation β.
    weight_std : float, default=1.0
        Weight standard deviation σ_w.
    bias_in_forward : bool, default=True
        If True (the convention above: the paper's and neural-tangents') the
        bias variance β² is part of the forward covariance Σˡ, so it propagates into
        the next layer.  If False, the biases are treated as initialised at
        zero: Σˡ is the bias-free covariance and β² only enters the NTK through
        the bias gradients (Θˡ⁺¹ = Θˡ Σ̇ˡ⁺¹ + Σˡ⁺¹ + β²).  The latter is the
        convention of scikit-ntk 1.2.1 and exists here only to document the
        mapping to it.

    Returns
    -------
    ntk : ndarray of shape (n_samples, n_samples)
        Θᴸ(X, X).
    nngp : ndarray of shape (n_samples, n_samples)
        Σᴸ(X, X) (with β² included even if ``bias_in_forward`` is False, i.e.
        the readout layer's kernel).
    """
    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    w2 = weight_std**2
    b2 = beta**2

    # sigma: forward covariance Σˡ that feeds the next layer's expectation.
    # theta: NTK Θˡ.
    linear = w2 * (X @ X.T) / n_features
    if bias_in_forward:
        sigma = linear + b2
        theta = sigma.copy()
    else:
        sigma = linear
        theta = linear + b2

    for _ in range(depth - 1):
        variances = np.diag(sigma).copy()
        norms = np.sqrt(np.outer(variances, variances))
        # A zero-norm input (possible only when beta == 0) has no angle; count
        # it as orthogonal (θ = π/2), as neural-tangents does, instead of 0/0.
        with np.errstate(invalid="ignore", divide="ignore"):
            cosines = np.where(norms > 0, sigma / norms, 0.0)
        # Rounding can push |cos θ| slightly past 1 (e.g. duplicate points).
        cosines = np.clip(cosines, -1.0, 1.0)
        angles = np.arccos(cosines)

        sigma_dot = w2 * (np.pi - angles) / (2 * np.pi)
        sigma = w2 * norms * (np.sin(angles) + (np.pi - angles) * cosines) / (2 * np.pi)
        if bias_in_forward:
            sigma = sigma + b2
            theta = theta * sigma_dot + sigma
        else:
            theta = theta * sigma_dot + sigma + b2

    nngp = sigma if bias_in_forward else sigma + b2
    return theta, nngp


def relu_ntk_naive(X, depth=4, beta=0.1, weight_std=1.0):
    """Θᴸ(X, X) alone: the first output of :func:`relu_ntk_gram_naive`."""
    return relu_ntk_gram_naive(X, depth=depth, beta=beta, weight_std=weight_std)[0]
