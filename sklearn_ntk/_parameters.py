"""The hyperparameters of a network: what is valid, how it is documented.

Kernels, estimators, samplers and finite networks all take ``depth``,
``activation``, ``beta`` and ``weight_std`` (and most ``n_jobs``).  This
module is their one home:

* their constraints, written once in scikit-learn's parameter-constraint
  language and checked by scikit-learn's own machinery: estimators through
  ``_parameter_constraints`` and ``_fit_context``, the kernels and finite
  networks (which are not estimators) through :func:`check_parameters`.  A
  bad value raises
  :class:`~sklearn.utils._param_validation.InvalidParameterError` (a
  ValueError and a TypeError) naming the parameter and the public class;
* their numpydoc entries (:data:`PARAMETER_DOCS`), which
  :func:`fill_docstring` inserts where a docstring has the line
  ``%(name)s``;
* :func:`public_init`, which lets public classes share the ``__init__`` that
  stores them while a wrong keyword still names the public class.
"""

import types
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)

from ._activations import ACTIVATION_NAME_LISTS, ACTIVATIONS, document_activations


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


def positive_real():
    """The constraint of a step size (learning rate, ...): a finite real > 0."""
    return Interval(Real, 0, np.inf, closed="neither")


#: The network hyperparameters; ``np.inf`` and NaN are refused (a closed
#: interval of the reals with an open infinite end).
NETWORK_PARAMETER_CONSTRAINTS = {
    "depth": [positive_integer()],
    "activation": [StrOptions(set(ACTIVATIONS)), callable],
    "beta": [Interval(Real, 0, np.inf, closed="left")],
    "weight_std": [positive_real()],
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


#: The numpydoc entries of the shared parameters, for :func:`fill_docstring`.
PARAMETER_DOCS = {
    "depth": """depth : int, default=3
    Number of dense layers L >= 1 (L - 1 hidden activations); depth 1 is
    the linear model.""",
    "beta": """beta : float, default=0.1
    Standard deviation of the biases (β >= 0).""",
    "weight_std": """weight_std : float, default=1.0
    Standard deviation multiplier of the weights (σ_w > 0).""",
    "n_jobs": """n_jobs : int, default=None
    Number of joblib workers (threads) over the tiles of the Gram matrix;
    any joblib backend set with ``joblib.parallel_config`` applies.
    ``None`` means 1, ``-1`` all processors; 0 is an error.""",
}


def fill_docstring(obj, entries=None):
    """Replace every line ``%(name)s`` of ``obj``'s docstring by an entry.

    The entry (from :data:`PARAMETER_DOCS`, or ``entries``, which take
    precedence) is indented as the line it replaces, so one text serves
    every docstring that documents the parameter.  The lists of activation
    names (``%(activations)s`` and the like, in the docstring or in an
    entry) come from the registry, through
    :func:`~sklearn_ntk._activations.document_activations`.

    Parameters
    ----------
    obj : class or function
        Its ``__doc__`` is rewritten in place.
    entries : dict of str, default=None
        Further entries, by name.

    Returns
    -------
    obj : class or function
        The same object, so that this can decorate a class.
    """
    entries = {**PARAMETER_DOCS, **(entries or {})}
    lines = []
    for line in obj.__doc__.splitlines():
        name = line.strip()
        if (not (name.startswith("%(") and name.endswith(")s"))
                or name[2:-2] in ACTIVATION_NAME_LISTS):
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines.extend(indent + text if text else text
                     for text in entries[name[2:-2]].splitlines())
    # The activation names last, so that an entry may hold their placeholder.
    obj.__doc__ = document_activations("\n".join(lines))
    return obj


def activation_name(activation):
    """The activation as a repr shows it: its name, or a callable's name."""
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", repr(activation))


def public_init(cls):
    """Give a public class its own copy of the ``__init__`` it inherits.

    scikit-learn reads a class's parameters from the signature of its
    ``__init__``, and Python names that function in the TypeError of a
    wrong keyword.  A copy named ``<cls>.__init__`` makes the error name the
    public class, as scikit-learn's own estimators' errors do
    (``NTK.__init__() got an unexpected keyword argument 'bogus'``), while
    the parameters are listed and stored once, in the shared base class.

    Parameters
    ----------
    cls : type
        The public class; it must not define ``__init__`` itself.

    Returns
    -------
    cls : type
        The same class, so that this can decorate it.
    """
    inherited = cls.__init__
    init = types.FunctionType(inherited.__code__, inherited.__globals__, "__init__",
                              inherited.__defaults__, inherited.__closure__)
    init.__kwdefaults__ = inherited.__kwdefaults__
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = inherited.__doc__
    cls.__init__ = init
    return cls
