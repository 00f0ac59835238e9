"""NTKSampler / NNGPSampler (random features) and Nystroem with our kernels."""

import numpy as np
import pytest
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_ntk._random_features as random_features
from sklearn_ntk import NNGP, NTK, NNGPSampler, NTKSampler
from sklearn_ntk._activations import ACTIVATIONS, get_activation

SAMPLERS = [(NNGPSampler, NNGP), (NTKSampler, NTK)]
EPS = np.finfo(float).eps
# The same with one sampler's case marked slow: the other stays in the fast
# loop (pytest -m "not slow").
NNGP_SLOW = [pytest.param(*SAMPLERS[0], marks=pytest.mark.slow), SAMPLERS[1]]
NTK_SLOW = [SAMPLERS[0], pytest.param(*SAMPLERS[1], marks=pytest.mark.slow)]


def _relative_error(features, K):
    return np.linalg.norm(features @ features.T - K) / np.linalg.norm(K)


def _kernel_draws(sampler, X, n_draws, **params):
    """Φ Φᵀ of the features of ``n_draws`` samplers (seeds 0, 1, ...)."""
    draws = []
    for seed in range(n_draws):
        features = sampler(random_state=seed, **params).fit_transform(X)
        draws.append(features @ features.T)
    return np.array(draws)


def _unbiased(draws, K, n_standard_errors):
    """Whether the mean of the draws is K to within sampling error.

    ``n_standard_errors`` standard errors of the mean per entry, plus the
    rounding of a mean of n draws (n eps max|draw|) for entries whose draws
    agree (standard error 0).
    """
    standard_error = draws.std(axis=0) / np.sqrt(len(draws))
    rounding = len(draws) * EPS * np.abs(draws).max()
    return np.all(np.abs(draws.mean(axis=0) - K) <= n_standard_errors * standard_error
                  + rounding)


@parametrize_with_checks([NNGPSampler(), NTKSampler(), NTKSampler(depth=1)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("sampler, kernel", SAMPLERS)
@pytest.mark.parametrize(
    "activation",
    ["relu"]
    + [pytest.param(name, marks=pytest.mark.slow) for name in ("tanh", "gelu")],
)
def test_unbiased_at_depth_two(X, sampler, kernel, activation):
    # For depth <= 2 the expected feature inner product is the exact kernel:
    # the mean over n draws must shrink towards it like n^(-1/2) with no
    # floor.  4 standard errors: two-sided 6e-5 an entry, 5e-3 for all 78
    # distinct entries of a 12-point kernel (Bonferroni).
    K = kernel(depth=2, activation=activation)(X)
    draws = _kernel_draws(sampler, X, 400, depth=2, activation=activation,
                          n_components=32)
    assert _unbiased(draws, K, n_standard_errors=4)


@pytest.mark.parametrize("depth", [2, 4])
def test_nngp_features_are_the_readout_inputs_of_their_network(
    X, depth, empirical_kernels, condition
):
    # Φ Φᵀ is the empirical NNGP of the network of the public weights,
    # written out independently (conftest); its readout is not drawn, and
    # the empirical NNGP does not depend on it.
    sampler = NNGPSampler(depth=depth, activation="erf", beta=0.3, weight_std=1.4,
                          n_components=40, random_state=0).fit(X)
    features = sampler.transform(X)
    width = sampler.random_weights_[-1].shape[1]
    weights = [weight.T for weight in sampler.random_weights_] + [np.zeros((1, width))]
    biases = list(sampler.random_biases_) + [np.zeros(1)]
    _, expected, _ = empirical_kernels(X, weights, biases, get_activation("erf"),
                                       0.3, 1.4)
    # Both sides round each layer's fan_in-term sums (the first layer's d,
    # then the width's) and a few elementwise passes, and the Gram's
    # width-term sums, in their own order: rounding of that size amplified
    # by the Gram's measured condition (normwise).
    n_sum = X.shape[1] + (depth - 1) * width + 16 * depth

    def gram(X):
        transformed = sampler.transform(X)
        return transformed @ transformed.T

    cond = condition(gram, X, normwise=True)
    np.testing.assert_allclose(features @ features.T, expected, rtol=0,
                               atol=2 * n_sum * EPS * cond * np.abs(expected).max())


@pytest.mark.parametrize("sampler, kernel", NNGP_SLOW)
def test_mean_over_seeds_converges_at_depth_three(X, sampler, kernel):
    # Deeper networks carry an O(1/n_components) bias (docstrings), too
    # small to resolve here: the mean over draws is as close to the kernel
    # as sampling noise allows (2.5 standard errors of the norm of the mean's
    # error), plus at most 1/n_components = 1 % of it.
    K = kernel(depth=3)(X)
    draws = _kernel_draws(sampler, X, 300, depth=3, n_components=100)
    standard_error = np.linalg.norm(draws.std(axis=0)) / np.sqrt(len(draws))
    bias = np.linalg.norm(draws.mean(axis=0) - K)
    assert bias < 2.5 * standard_error + 0.01 * np.linalg.norm(K)


@pytest.mark.parametrize("sampler, kernel", NNGP_SLOW)
def test_error_falls_like_inverse_square_root(X, sampler, kernel):
    K = kernel(depth=3)(X)
    sizes = np.array([64, 256, 1024])
    errors = [
        np.median([
            _relative_error(
                sampler(depth=3, n_components=size, random_state=seed).fit_transform(X), K
            )
            for seed in range(6)
        ])
        for size in sizes
    ]
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert -0.7 < slope < -0.35


# Slow but for relu with NTKSampler, which stays in the fast loop.
@pytest.mark.parametrize("sampler, kernel", NNGP_SLOW)
@pytest.mark.parametrize(
    "activation",
    [name if name == "relu" else pytest.param(name, marks=pytest.mark.slow)
     for name in ACTIVATIONS] + [pytest.param(np.tanh, marks=pytest.mark.slow)],
)
def test_every_activation(X, sampler, kernel, activation):
    K = kernel(depth=3, activation=activation)(X)
    features = sampler(
        depth=3, activation=activation, n_components=2000, random_state=0
    ).fit_transform(X)
    assert features.shape == (len(X), 2000)
    assert np.all(np.isfinite(features))
    assert _relative_error(features, K) < 0.25


@pytest.mark.parametrize("sampler, kernel", NNGP_SLOW)
def test_hyperparameters_and_cross_kernel(sampler, kernel):
    rng = np.random.RandomState(1)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(7, 3))
    params = dict(depth=4, activation="erf", beta=0.5, weight_std=1.5)
    K = kernel(**params)(X, Y)
    transformer = sampler(n_components=1500, random_state=0, **params).fit(X)
    approx = transformer.transform(X) @ transformer.transform(Y).T
    assert np.linalg.norm(approx - K) / np.linalg.norm(K) < 0.2


@pytest.mark.parametrize("sampler, kernel", SAMPLERS)
def test_depth_one_is_exact_with_whole_blocks(X, sampler, kernel):
    # The linear kernel's features are an orthogonal projection of
    # [σ_w x/√n0, β]: exact when n_components is a multiple of n0 + 1.
    n_network_features = X.shape[1] + 1
    n_components = 2 * n_network_features
    features = sampler(depth=1, beta=0.3, n_components=n_components,
                       random_state=0).fit_transform(X)
    # Rounding: the projection's (n0 + 1)-term and the product's
    # n_components-term sums, and Q's orthogonality (n_components eps),
    # against the kernel's own n0-term sums.
    expected = kernel(depth=1, beta=0.3)(X)
    n_sums = n_network_features + 2 * n_components + X.shape[1]
    atol = 2 * n_sums * EPS * np.abs(expected).max()
    np.testing.assert_allclose(features @ features.T, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("sampler, kernel", NTK_SLOW)
def test_tiny_n_components_is_projected_unbiased(X, sampler, kernel):
    # Fewer components than the smallest network has features: projected
    # down, still unbiased at depth 2 (4 standard errors, as above).
    K = kernel(depth=2)(X)
    draws = _kernel_draws(sampler, X, 2000, depth=2, n_components=1)
    assert _unbiased(draws, K, n_standard_errors=4)


@pytest.mark.parametrize("sampler", [NNGPSampler, NTKSampler])
def test_batches_do_not_change_the_result(X, sampler, monkeypatch, condition):
    transformer = sampler(depth=3, n_components=50, random_state=0).fit(X)
    whole = transformer.transform(X)
    # Row blocks of other shapes may reorder each layer's sums over its
    # fan-in (and the sketches' over n_components), then ~16 passes a layer.
    n_sum = sum(w.shape[0] for w in transformer.random_weights_) + 50
    cond = condition(transformer.transform, X, normwise=True)
    monkeypatch.setattr(random_features, "_BATCH_BYTES", 1)
    np.testing.assert_allclose(
        transformer.transform(X), whole, rtol=0,
        atol=2 * (n_sum + 16 * 3) * EPS * cond * np.abs(whole).max())


@pytest.mark.parametrize("sampler", [NNGPSampler, NTKSampler])
def test_reproducible_and_feature_names(X, sampler):
    a = sampler(n_components=20, random_state=3).fit(X)
    b = sampler(n_components=20, random_state=3).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    names = a.get_feature_names_out()
    assert names[0] == f"{sampler.__name__.lower()}0" and len(names) == 20


@pytest.mark.parametrize(
    "sampler, params, error",
    [
        (NTKSampler, dict(activation="nope"), ValueError),
        (NNGPSampler, dict(depth=0), ValueError),
        (NNGPSampler, dict(beta=-1.0), ValueError),
        (NTKSampler, dict(weight_std=0.0), ValueError),
        (NTKSampler, dict(weight_std=np.inf), ValueError),
        (NNGPSampler, dict(n_components=0), ValueError),
        (NTKSampler, dict(n_components=True), TypeError),
    ],
)
def test_bad_parameters_raise_errors_naming_them(X, sampler, params, error):
    (name,) = params
    with pytest.raises(error, match=f"The '{name}' parameter of {sampler.__name__}"):
        sampler(**params).fit(X)


def test_unknown_keyword_names_the_public_class():
    for sampler in (NNGPSampler, NTKSampler):
        with pytest.raises(TypeError, match=rf"^{sampler.__name__}\.__init__\(\)"):
            sampler(bogus=1)


def test_bad_input(X):
    transformer = NTKSampler().fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but NTKSampler is "
                                         "expecting 3 features as input"):
        transformer.transform(X[:, :2])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        NNGPSampler().fit(np.full((3, 2), np.nan))


@pytest.mark.parametrize(
    "kernel",
    [NTK(depth=3),
     pytest.param(NNGP(depth=2, activation="tanh"), marks=pytest.mark.slow)],
)
def test_nystroem_with_our_kernels(X, kernel):
    # With every sample as a landmark, Nystroem reproduces the kernel exactly,
    # to rounding: K's own (d-term sums, ~16 passes a layer) and its SVD's
    # and products' backward error (n eps), amplified by κ(K).
    expected = kernel(X)
    n, d = X.shape
    kappa = np.linalg.cond(expected)
    features = Nystroem(kernel=kernel, n_components=n).fit_transform(X)
    np.testing.assert_allclose(
        features @ features.T, expected, rtol=0,
        atol=2 * (n + d + 16 * kernel.depth) * EPS * kappa * np.abs(expected).max())
    # Fewer landmarks: an approximation, usable in a pipeline.
    rng = np.random.RandomState(0)
    X_big = rng.normal(size=(300, 4))
    y = np.sin(X_big[:, 0]) + X_big[:, 1] * X_big[:, 2]
    model = make_pipeline(
        Nystroem(kernel=kernel, n_components=100, random_state=0), Ridge(alpha=1e-3)
    ).fit(X_big, y)
    assert model.score(X_big, y) > 0.8


@pytest.mark.parametrize("sampler", [NTKSampler, NNGPSampler])
def test_float32_input_gives_float32_features_rounded_from_float64(
    sampler, condition
):
    X = np.random.RandomState(3).normal(size=(40, 4))
    fitted = sampler(n_components=300, random_state=0).fit(X)
    single, double = fitted.transform(X.astype(np.float32)), fitted.transform(X)
    assert single.dtype == np.float32 and double.dtype == np.float64
    # Computed in float64 from the float32 input and rounded: the input's
    # rounding (u = 2^-24 relative) times the features' condition, and the
    # output's (u); normwise.
    u = 2.0**-24
    cond = condition(fitted.transform, X, normwise=True)
    np.testing.assert_allclose(single, double, rtol=0,
                               atol=(cond + 1) * u * np.abs(double).max())


@pytest.mark.parametrize("sampler", [NNGPSampler, NTKSampler])
@pytest.mark.parametrize("depth", [1, 3])
def test_network_is_fixed_at_fit(X, sampler, depth):
    # The random weights are drawn at fit; the other parameters of the
    # network belong to it, so set_params after fit changes no feature.
    fitted = sampler(depth=depth, n_components=30, random_state=0).fit(X)
    features = fitted.transform(X)
    fitted.set_params(depth=2, beta=2.0, weight_std=3.0, activation="erf",
                      n_components=7)
    np.testing.assert_array_equal(fitted.transform(X), features)
    assert fitted.get_feature_names_out().shape == (30,)
    refitted = fitted.fit(X).transform(X)
    assert refitted.shape == (len(X), 7)
