"""Shared data, references and helpers of the tests.

* ``X``: the standard-normal inputs most tests use (12 points in 3
  dimensions);
* the neural-tangents reference values (``tests/data``, see its README):
  ``neural_tangents_reference`` (every array, by key) and
  ``neural_tangents_kernel`` (one reference Gram matrix per case);
* ``empirical_kernels``: the output, empirical NNGP and empirical NTK of a
  finite network from its weights, written here from the user guide's
  formulas, independently of the package;
* tolerances: every tolerance in ``tests/`` is derived (README, "How we
  check correctness"): a stated multiple of the machine epsilon times the
  conditioning of what is compared, a stated statistical bound, or the
  stated accuracy of an outside reference.  The conditioning of a kernel
  matrix or an estimator's prediction with respect to rounding in its
  inputs has no closed form here, so the ``condition`` fixture measures it.
"""

from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

_REFERENCE_PATH = Path(__file__).parent / "data" / "neural_tangents_reference.npz"


def _read_reference():
    """Every array of the reference file, read-only, by key."""
    with np.load(_REFERENCE_PATH) as data:
        arrays = {key: data[key] for key in data.files}
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


_REFERENCE = _read_reference()
#: The keys of the reference Gram matrices: "ntk_xy|ACT|DEPTH|BETA|WEIGHT_STD"
#: and "nngp_xy|...", of the inputs ``X`` and ``Y`` of the file.
_REFERENCE_KERNEL_KEYS = sorted(
    key for key in _REFERENCE if key.startswith(("ntk_xy|", "nngp_xy|"))
)


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
def X():
    """12 standard-normal points in 3 dimensions."""
    return np.random.default_rng(0).standard_normal((12, 3))


@pytest.fixture(scope="session")
def neural_tangents_reference():
    """neural-tangents 0.6.5's kernels and ensemble predictions, by key.

    The arrays are read-only (tests/data/README.md lists the keys).
    """
    return _REFERENCE


@pytest.fixture(params=_REFERENCE_KERNEL_KEYS)
def neural_tangents_kernel(request):
    """One reference Gram matrix of neural-tangents, with what it is of.

    Returns a dict: ``kind`` ("ntk" or "nngp"), ``activation``, ``depth``,
    ``beta``, ``weight_std``, the inputs ``X`` and ``Y`` and the matrix
    ``K`` = kernel(X, Y).
    """
    kind, activation, depth, beta, weight_std = request.param.split("|")
    return {
        "kind": kind.removesuffix("_xy"), "activation": activation,
        "depth": int(depth), "beta": float(beta), "weight_std": float(weight_std),
        "X": _REFERENCE["X"], "Y": _REFERENCE["Y"], "K": _REFERENCE[request.param],
    }


def _empirical_kernels(X, weights, biases, activation, beta, weight_std):
    """Output f, empirical NNGP and empirical NTK of a finite network at X.

    Written from the user guide ("Finite networks and the empirical NTK"),
    independently of the package: layer l computes
    α̃⁽ˡ⁺¹⁾ = σ_w/√n_l W⁽ˡ⁾ α⁽ˡ⁾ + β b⁽ˡ⁾ (``weights[l]`` of shape
    (n_{l+1}, n_l)), the hidden layers apply σ, and
    Θ̂(x, x') = Σ_l [σ_w² α⁽ˡ⁾·α⁽ˡ⁾'/n_l + β²] [δ⁽ˡ⁺¹⁾·δ⁽ˡ⁺¹⁾'] with the
    back-propagated δ⁽ˡ⁺¹⁾ = ∂f/∂α̃⁽ˡ⁺¹⁾; the NNGP is the readout's term,
    σ_w² α⁽ᴸ⁻¹⁾·α⁽ᴸ⁻¹⁾'/n_{L-1} + β².  ``activation`` has elementwise
    ``function`` and ``derivative`` methods.  Everything is float64.
    """
    depth = len(weights)
    widths = [weight.shape[1] for weight in weights]
    activations, derivatives = [np.asarray(X, dtype=float)], []
    for layer in range(depth):
        pre = (weight_std / np.sqrt(widths[layer])) * activations[-1] @ np.asarray(
            weights[layer], dtype=float).T
        pre += beta * np.asarray(biases[layer], dtype=float)
        if layer == depth - 1:
            output = pre[:, 0]
        else:
            derivatives.append(activation.derivative(pre))
            activations.append(activation.function(pre))
    deltas = [np.ones((len(X), 1))]
    for layer in range(depth - 1, 0, -1):
        back = deltas[0] @ np.asarray(weights[layer], dtype=float) * (
            weight_std / np.sqrt(widths[layer]))
        deltas.insert(0, back * derivatives[layer - 1])

    def forward_factor(layer):
        a = activations[layer]
        return weight_std**2 * a @ a.T / widths[layer] + beta**2

    ntk = sum(forward_factor(layer) * (deltas[layer] @ deltas[layer].T)
              for layer in range(depth))
    return output, forward_factor(depth - 1), ntk


@pytest.fixture
def empirical_kernels():
    """The function computing a finite network's output and empirical kernels.

    Called as ``empirical_kernels(X, weights, biases, activation, beta,
    weight_std)``; returns (f, NNGP, NTK) at X (see ``_empirical_kernels``).
    """
    return _empirical_kernels


@pytest.fixture
def condition():
    """:func:`relative_condition`, for tests that derive a tolerance from it."""
    return relative_condition
