"""Shared helpers for derived tolerances.

Every tolerance in ``tests/`` is derived (README, "How we check correctness"):
a stated multiple of the machine epsilon times the conditioning of what is
compared, a stated statistical bound, or the stated accuracy of an outside
reference.  The conditioning of a kernel matrix or an estimator's prediction
with respect to rounding in its inputs has no closed form here, so the
``condition`` fixture measures it.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits


def pytest_configure(config):
    """Run BLAS single-threaded for the whole session (doctests included).

    On a shared two-core machine OpenBLAS's second thread spin-waits for a
    core, which made the large products of the random-feature tests 3-10
    times slower under load (test_every_activation took 15-45 s a case).
    Rounding may differ from multi-threaded BLAS; the tolerances allow for
    any summation order.
    """
    config._blas_limits = threadpool_limits(limits=1, user_api="blas")


def pytest_unconfigure(config):
    limits = getattr(config, "_blas_limits", None)
    if limits is not None:
        limits.restore_original_limits()


def relative_condition(function, *arrays, normwise=False, delta=1e-7, draws=3,
                       seed=0):
    """Condition number of ``function(*arrays)`` under relative input perturbations.

    The largest |f(x ∘ (1 + δE)) − f(x)| / (δ |f(x)|) over the entries of the
    output and ``draws`` draws of E, uniform on [-1, 1] independently for every
    input entry.  A relative perturbation of size u of the inputs (rounding,
    or a reordered sum over them, which is equivalent to one) then moves an
    entry by at most about cond · u · |f| (first order; random directions
    estimate the worst one).  With ``normwise=True`` the denominator is
    δ max|f| instead, for outputs with entries near zero (gradients).
    Entries equal to zero are skipped.  δ = 1e-7 keeps the second-order term
    (δ cond²) and the rounding of the difference (eps / δ ≈ 2e-9) far below 1.
    Never less than 1 (an entry's own rounding).
    """
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(array, dtype=float) for array in arrays]
    value = np.asarray(function(*arrays), dtype=float)
    scale = np.abs(value).max() if normwise else np.abs(value)
    nonzero = (scale > 0) & np.isfinite(value)
    cond = 1.0
    for _ in range(draws):
        perturbed = [array * (1.0 + delta * rng.uniform(-1.0, 1.0, array.shape))
                     for array in arrays]
        change = np.abs(np.asarray(function(*perturbed), dtype=float) - value)
        ratio = change[nonzero] / (delta * np.broadcast_to(scale, value.shape)[nonzero])
        if ratio.size:
            cond = max(cond, float(ratio.max()))
    return cond


@pytest.fixture
def condition():
    """:func:`relative_condition`, for tests that derive a tolerance from it."""
    return relative_condition
