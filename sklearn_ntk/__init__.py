"""Neural Tangent and NNGP kernels of infinitely wide networks for scikit-learn."""

from ._kernels import NNGP, NTK

__all__ = ["NTK", "NNGP"]
__version__ = "0.1.0"
