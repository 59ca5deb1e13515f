"""clkit: the helper package of clbook, executable papers on the theory of contrastive learning.

Modules are concepts: ``device`` and ``scale`` (where and how big), ``claims`` (the book's checked
numbers), ``stats`` (Monte Carlo), ``mixtures`` (data models), ``losses`` (contrastive losses),
``subspaces`` (linear algebra on subspaces), ``style`` (figures), and one module per paper for its
closed forms and bounds (``projection``, ``fisher``, ``alpha_cl``, ``arcl``, ``generalization``).
Every public name of every module (its ``__all__``) is re-exported here.
"""

from . import claims, device, losses, mixtures, scale, stats, style, progress_bars, projection, subspaces, fisher, alpha_cl, arcl, generalization, symbolic, notebook, optim
from . import quadrature, population_solvers, infonce_training
from .claims import *  # noqa: F401,F403
from .device import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .mixtures import *  # noqa: F401,F403
from .scale import *  # noqa: F401,F403
from .stats import *  # noqa: F401,F403
from .style import *  # noqa: F401,F403
from .progress_bars import *  # noqa: F401,F403
from .projection import *  # noqa: F401,F403
from .subspaces import *  # noqa: F401,F403
from .fisher import *  # noqa: F401,F403
from .alpha_cl import *  # noqa: F401,F403
from .arcl import *  # noqa: F401,F403
from .generalization import *  # noqa: F401,F403
from .symbolic import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .quadrature import *  # noqa: F401,F403
from .population_solvers import *  # noqa: F401,F403
from .infonce_training import *  # noqa: F401,F403
from . import certificate_search, lattice_training
from . import digits
from .digits import *  # noqa: F401,F403
from .certificate_search import *  # noqa: F401,F403
from .lattice_training import *  # noqa: F401,F403

__version__ = "0.1.0"

_MODULES = (
    claims, device, losses, mixtures, scale, stats, style, progress_bars,
    projection, subspaces, fisher, alpha_cl, arcl, generalization, symbolic, notebook, optim,
    quadrature, population_solvers, infonce_training, certificate_search, lattice_training,
    digits,
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
