"""The hyperparameters of a network: one definition of what is valid.

Kernels, estimators, samplers and finite networks all take ``depth``,
``activation``, ``beta`` and ``weight_std`` (and most ``n_jobs``).  Their
constraints are written once, in scikit-learn's parameter-constraint
language, and checked by scikit-learn's own machinery: estimators through
``_parameter_constraints`` and ``_fit_context``, the kernels and finite
networks (which are not estimators) through :func:`check_parameters`.  A bad
value raises :class:`~sklearn.utils._param_validation.InvalidParameterError`
(a ValueError and a TypeError) naming the parameter and the public class.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)

from ._activations import ACTIVATIONS


class _Integer(Interval):
    """An integer interval that, unlike scikit-learn's, refuses True and False."""

    def __init__(self, left, right, *, closed):
        super().__init__(Integral, left, right, closed=closed)

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


def positive_integer():
    """The constraint of a size (depth, width, ...): an integer >= 1."""
    return _Integer(1, None, closed="left")


def non_negative_integer():
    """The constraint of a count (of steps, ...): an integer >= 0."""
    return _Integer(0, None, closed="left")


#: The network hyperparameters; ``np.inf`` and NaN are refused (a closed
#: interval of the reals with an open infinite end).
NETWORK_PARAMETER_CONSTRAINTS = {
    "depth": [positive_integer()],
    "activation": [StrOptions(set(ACTIVATIONS)), callable],
    "beta": [Interval(Real, 0, np.inf, closed="left")],
    "weight_std": [Interval(Real, 0, np.inf, closed="neither")],
}

#: ``n_jobs`` as joblib reads it: None, a number of workers >= 1, or <= -1
#: for all processors but -1 - n_jobs.  joblib itself would reject 0 only deep
#: inside the first parallel call.
N_JOBS_CONSTRAINT = [None, _Integer(None, -1, closed="right"), positive_integer()]


def check_parameters(caller_name, extra_constraints=None, **params):
    """Validate network hyperparameters (and ``n_jobs``) given by keyword.

    Parameters
    ----------
    caller_name : str
        The public class or function, named in the errors.
    extra_constraints : dict, default=None
        Constraints of parameters other than the network's and ``n_jobs``,
        in scikit-learn's language.
    **params
        The values, each named as in NETWORK_PARAMETER_CONSTRAINTS,
        ``n_jobs`` or ``extra_constraints``.
    """
    constraints = {**NETWORK_PARAMETER_CONSTRAINTS, "n_jobs": N_JOBS_CONSTRAINT,
                   **(extra_constraints or {})}
    validate_parameter_constraints(
        {name: constraints[name] for name in params}, params, caller_name=caller_name
    )
