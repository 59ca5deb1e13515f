"""clkit: the helper package of clbook, executable papers on the theory of contrastive learning.

Modules are concepts: ``device`` and ``scale`` (where and how big), ``claims`` (the book's checked
numbers), ``stats`` (Monte Carlo), ``mixtures`` (data models), ``losses`` (contrastive losses),
``style`` (figures), and one module per paper for its closed forms and bounds.
"""

from .claims import Claim, ClaimFailure, Claims, claims_directory
from .device import DEFAULT_DTYPE, as_tensor, default_device, make_generator
from .losses import info_nce
from .mixtures import GaussianMixture
from .scale import SCALES, by_scale, scale_profile
from .stats import MonteCarloEstimate, monte_carlo_mean
from .style import PALETTE, figure_size, use_style

__version__ = "0.1.0"

__all__ = [
    "Claim",
    "ClaimFailure",
    "Claims",
    "claims_directory",
    "DEFAULT_DTYPE",
    "as_tensor",
    "default_device",
    "make_generator",
    "info_nce",
    "GaussianMixture",
    "SCALES",
    "by_scale",
    "scale_profile",
    "MonteCarloEstimate",
    "monte_carlo_mean",
    "PALETTE",
    "figure_size",
    "use_style",
]
