"""Neural Tangent and NNGP kernels of infinitely wide networks for scikit-learn."""

from ._kernels import NNGP, NTK
from ._estimators import NNGPRegressor, NTKClassifier, NTKRegressor

__all__ = ["NTK", "NNGP"]
__all__ += ["NTKRegressor", "NNGPRegressor", "NTKClassifier"]
__version__ = "0.1.0"
