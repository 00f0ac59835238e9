"""Keeping kernel computations inside the range of float64.

Kernel values grow like the square of the input scale (times weight_std to
the power 2·depth), so inputs of norm 1e160 give values beyond the largest
float64 (1.8e308) and inputs of norm 1e-160 values below the smallest normal
one (2.2e-308), where relative accuracy is lost.  The package either returns
the kernels with the accuracy it has at unit scale or raises a
:class:`ValueError` made by :func:`range_error`, which names the cause and
the fix; it never returns NaN or inf, and no RuntimeWarning escapes.

Two tools serve that:

* :func:`floating_point_checks`, a ``np.errstate`` that turns overflow,
  invalid operations and division by zero into ``FloatingPointError``
  (underflow stays silent: its effect is judged on the results, see
  ``_recursion``).  Computations that run under it have been written so that
  none of these happens while the true results are representable, so an
  exception means the results are not;
* :func:`power_of_two_exponent`: scaling by a power of two is exact in
  floating point (barring underflow and overflow), which is what lets
  positively homogeneous activations and the estimators' linear algebra run
  at unit scale and scale the results back exactly.
"""

import contextlib
import math

import numpy as np

#: The smallest positive normal float64: below it results lose precision.
TINY = np.finfo(float).tiny

_ADVICE = (
    "Standardise the inputs (e.g. with sklearn.preprocessing.StandardScaler), "
    "or lower weight_std and beta."
)


def floating_point_checks():
    """``np.errstate`` raising FloatingPointError on overflow, 0/0, x/0, inf-inf.

    numpy checks the floating-point status after every ufunc and matmul
    anyway, so this costs nothing; it is thread-local, so code running in
    joblib workers must enter it itself.
    """
    return np.errstate(over="raise", invalid="raise", divide="raise")


def power_of_two_exponent(value):
    """The e with 2**(e - 1) <= |value| < 2**e (0 for 0), as math.frexp."""
    return math.frexp(float(value))[1] if value else 0


def max_abs(*arrays):
    """The largest |entry| over the arrays (0.0 if all are empty)."""
    largest = 0.0
    for array in arrays:
        if array is not None and array.size:
            largest = max(largest, float(np.max(array)), -float(np.min(array)))
    return largest


def _log10_row_norms(X):
    """log10 of the largest row norm of X, without overflow (-inf for 0)."""
    largest = max_abs(X)
    if largest == 0.0:
        return -math.inf
    exponent = power_of_two_exponent(largest)
    scaled = np.ldexp(X, -exponent)
    norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", scaled, scaled))))
    return math.log10(norm) + exponent * math.log10(2.0)


def _format_log10(value):
    """A number given by its log10 as '1.2e+400' (even beyond float64)."""
    if value == -math.inf:
        return "0"
    exponent = math.floor(value)
    mantissa = 10.0 ** (value - exponent)
    if mantissa >= 9.95:
        mantissa, exponent = 1.0, exponent + 1
    return f"{mantissa:.1f}e{exponent:+d}"


def describe_inputs(arrays, beta, weight_std):
    """'the largest input norm is ... and the largest first-layer ...' text."""
    arrays = [np.asarray(array, dtype=float) for array in arrays if array is not None]
    arrays = [array for array in arrays if array.size]
    if not arrays:
        return "the inputs are empty"
    log_norm = max(_log10_row_norms(array) for array in arrays)
    n_features = arrays[0].shape[1]
    # σ_w² |x|²/n0 + β², in logs: log10(10^a + 10^b) = max + log10(1 + 10^-|a-b|).
    terms = [2.0 * (log_norm + math.log10(weight_std)) - math.log10(n_features)]
    if beta:
        terms.append(2.0 * math.log10(beta))
    top = max(terms)
    log_variance = top + math.log10(sum(10.0 ** (term - top) for term in terms))
    return (
        f"the largest input norm is {_format_log10(log_norm)} and the largest "
        f"first-layer pre-activation variance {_format_log10(log_variance)}"
    )


def range_error(problem, arrays=(), beta=0.0, weight_std=1.0):
    """A ValueError: ``problem``, the scale of the inputs, and the fix."""
    details = describe_inputs(arrays, beta, weight_std) if len(arrays) else ""
    details = f" ({details})" if details else ""
    return ValueError(f"{problem}{details}. {_ADVICE}")


@contextlib.contextmanager
def checked_range(what, arrays=(), beta=0.0, weight_std=1.0):
    """Run a block under :func:`floating_point_checks`; report its failure.

    A FloatingPointError becomes the ValueError of :func:`range_error`
    ("<what> are not representable in float64: ..."), chained to it.
    """
    try:
        with floating_point_checks():
            yield
    except FloatingPointError as error:
        raise range_error(
            f"{what} are not representable in float64 ({error})",
            arrays, beta, weight_std,
        ) from error
