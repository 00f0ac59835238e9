"""Neural Tangent and NNGP kernels of infinitely wide networks for scikit-learn."""

from ._kernels import NNGP, NTK, kernels_by_depth
from ._estimators import NNGPRegressor, NTKClassifier, NTKRegressor
from ._gradient_flow import SingularKernelWarning
from ._random_features import NNGPSampler, NTKSampler

__all__ = ["NTK", "NNGP", "kernels_by_depth"]
__all__ += ["NTKRegressor", "NNGPRegressor", "NTKClassifier", "SingularKernelWarning"]
__all__ += ["NTKSampler", "NNGPSampler"]
__version__ = "0.1.0"
