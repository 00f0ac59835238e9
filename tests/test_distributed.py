"""The Gram computation on a Dask distributed cluster gives the in-process result.

`kernel_matrices` hands its tiles to :class:`joblib.Parallel`; under
``joblib.parallel_config(backend="dask")`` they run on the workers of a
``distributed.Client``.  The cluster is local: two worker processes, so the
tasks really are pickled and shipped.
"""

import joblib
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from sklearn_ntk import NNGP, NTK  # noqa: E402
from sklearn_ntk._activations import get_activation  # noqa: E402
from sklearn_ntk._numerical_activations import (  # noqa: E402
    _MAX_TERMS,
    QuadratureActivation,
)
from sklearn_ntk._recursion import kernel_matrices  # noqa: E402

EPS = np.finfo(float).eps


def _rounding_multiple(X, kernel):
    """How many roundings may differ between a worker and this process.

    A worker's BLAS (its own thread count) may order differently the sums over
    the d inputs and, for a quadrature activation, over the Gauss–Hermite
    nodes of its Hermite coefficients (at most 2·4096 + 64); then ~16
    elementwise passes a layer round on both sides.
    """
    n_sum = X.shape[1]
    if isinstance(get_activation(kernel.activation), QuadratureActivation):
        n_sum += 2 * _MAX_TERMS + 64
    return 2 * (n_sum + 16 * kernel.depth)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    return rng.normal(size=(150, 4)), rng.normal(size=(70, 4))


@pytest.mark.parametrize(
    "kernel",
    [NTK(depth=3), NNGP(depth=4, activation="erf", beta=0.0),
     pytest.param(NTK(depth=2, activation="tanh"), marks=pytest.mark.slow)],
)
def test_kernel_on_dask_equals_in_process(client, data, kernel, condition):
    X, Y = data
    expected_xx, expected_xy = kernel(X), kernel(X, Y)
    expected_gradient = kernel(X, eval_gradient=True)[1]
    with joblib.parallel_config(backend="dask"):
        K_xx, K_xy = kernel(X), kernel(X, Y)
        gradient = kernel(X, eval_gradient=True)[1]
    # The same numpy code on the same machine: equal to rounding, amplified
    # by the condition (normwise for the gradient, whose entries cross zero).
    multiple = _rounding_multiple(X, kernel)
    rtol = multiple * EPS * condition(kernel, X, Y)
    np.testing.assert_allclose(K_xx, expected_xx, rtol=rtol)
    np.testing.assert_allclose(K_xy, expected_xy, rtol=rtol)
    cond = condition(lambda X: kernel(X, eval_gradient=True)[1], X, normwise=True)
    np.testing.assert_allclose(gradient, expected_gradient, rtol=0,
                               atol=multiple * EPS * cond * np.abs(gradient).max())


def test_tiles_run_on_both_workers(client, data, condition):
    X, _ = data
    params = dict(depth=3, activation="relu", beta=0.1, weight_std=1.0, kernel="both",
                  tile_size=32)
    expected = kernel_matrices(X, **params)
    with distributed.get_task_stream(client) as stream:
        with joblib.parallel_config(backend="dask"):
            result = kernel_matrices(X, **params)
    workers = {task["worker"] for task in stream.data}
    assert workers == set(client.scheduler_info()["workers"])
    # Workers run BLAS with their own thread count, which may change the
    # summation order of the first layer's products: equal to rounding.
    rtol = _rounding_multiple(X, NTK(depth=3)) * EPS
    np.testing.assert_allclose(
        result.ntk, expected.ntk,
        rtol=rtol * condition(lambda X: kernel_matrices(X, **params).ntk, X))
    np.testing.assert_allclose(
        result.nngp, expected.nngp,
        rtol=rtol * condition(lambda X: kernel_matrices(X, **params).nngp, X))
