"""clkit: the helper package of clbook, executable papers on the theory of contrastive learning.

Modules are concepts:

* where and how big: ``device``, ``scale``, ``progress_bars``;
* the book's checked numbers: ``claims`` (claims and their table), ``symbolic`` (SymPy steps as
  claims), ``notebook`` (``glue`` outside the book: ``clkit.notebook.glue``);
* shared numerics: ``stats`` (Monte Carlo), ``quadrature`` (Gauss–Hermite rules), ``optim``
  (damped Newton with backtracking), ``subspaces`` (linear algebra on subspaces), ``style`` (figures);
* data and losses: ``mixtures`` (Gaussian mixtures), ``losses`` (contrastive losses), ``digits``
  (scikit-learn's handwritten digits, split, standardised and augmented);
* one module per paper for its closed forms, models and bounds: ``projection``, ``fisher``,
  ``alpha_cl``, ``arcl``, ``generalization``;
* solvers and trainers, named for what they do: ``population_solvers`` (PSD-cone and CLIP
  population minimisers, KKT certificates), ``infonce_training`` (minibatch InfoNCE training),
  ``lattice_training`` (encoders on the bridged lattice), ``certificate_search`` (adversarial
  search of Theorem 1's certificate).

Every public name of every module (its ``__all__``) is re-exported here.
"""

from . import (alpha_cl, arcl, certificate_search, claims, device, digits, fisher, generalization,
               infonce_training, lattice_training, losses, mixtures, notebook, optim,
               population_solvers, progress_bars, projection, quadrature, scale, stats, style,
               subspaces, symbolic)
from .alpha_cl import *  # noqa: F401,F403
from .arcl import *  # noqa: F401,F403
from .certificate_search import *  # noqa: F401,F403
from .claims import *  # noqa: F401,F403
from .device import *  # noqa: F401,F403
from .digits import *  # noqa: F401,F403
from .fisher import *  # noqa: F401,F403
from .generalization import *  # noqa: F401,F403
from .infonce_training import *  # noqa: F401,F403
from .lattice_training import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .mixtures import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .population_solvers import *  # noqa: F401,F403
from .progress_bars import *  # noqa: F401,F403
from .projection import *  # noqa: F401,F403
from .quadrature import *  # noqa: F401,F403
from .scale import *  # noqa: F401,F403
from .stats import *  # noqa: F401,F403
from .style import *  # noqa: F401,F403
from .subspaces import *  # noqa: F401,F403
from .symbolic import *  # noqa: F401,F403

__version__ = "0.1.0"

_MODULES = (
    alpha_cl, arcl, certificate_search, claims, device, digits, fisher, generalization,
    infonce_training, lattice_training, losses, mixtures, notebook, optim, population_solvers,
    progress_bars, projection, quadrature, scale, stats, style, subspaces, symbolic,
)


def _public_names() -> list[str]:
    """Every module's ``__all__``; a name exported by two modules would shadow one silently: refuse it."""
    owner: dict[str, str] = {}
    for module in _MODULES:
        for name in module.__all__:
            if name in owner:
                raise ImportError(f"clkit: {name!r} is exported by both clkit.{owner[name]} and {module.__name__}")
            owner[name] = module.__name__.rsplit(".", 1)[-1]
    return sorted(owner)


__all__ = _public_names()
