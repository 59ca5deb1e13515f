"""The planted errors: wrong variants of the formulas each chapter rests on.

Each :class:`PlantedError` replaces one attribute of a clkit module by a wrong variant (a constant
a few per cent off, a dropped term, a factor 2 in a bound, the wrong subspace, an optimistic
condition, a sign). ``tests/test_planted_errors.py`` plants each one, executes its chapter at smoke
scale, and asserts that the chapter *fails through one of its own claims* (a ``ClaimFailure``),
not through an unrelated crash. A planted error that a chapter cannot catch is a finding about the
chapter: strengthen the chapter, never drop the mutant.

Writing one: ``target`` is ``"clkit.<module>.<name>"``; ``make`` receives the original object and
returns the wrong variant (usually a wrapper that perturbs the original's result, or a
re-implementation with one deliberate mistake). The replacement is installed on the module, on
``clkit`` itself and on every other clkit module that imported the same object, before the
chapter's first cell runs.

Each chapter keeps its own list in ``tests/planted/ch<NN>.py`` (a module-level ``PLANTED`` list of
:class:`PlantedError`); this module defines the type and collects them all.
"""

from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["PlantedError", "PLANTED", "plant", "by_chapter"]


@dataclass(frozen=True)
class PlantedError:
    id: str
    chapter: str  # file stem under book/chapters
    target: str  # "clkit.module.attribute"
    description: str  # what is wrong, in the words of the chapter's formula
    make: Callable[[Any], Any]  # original -> wrong variant


def scaled(factor: float) -> Callable[[Any], Any]:
    """Wrong variant: the original's (scalar or tensor) result times ``factor``."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **kwargs) * factor

        return wrong

    return make


def shifted(offset: float) -> Callable[[Any], Any]:
    """Wrong variant: the original's result plus ``offset``."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrong(*args: Any, **kwargs: Any) -> Any:
            return original(*args, **kwargs) + offset

        return wrong

    return make


def _collect() -> list[PlantedError]:
    """Every chapter's list, in chapter order (tests/planted/ch01.py, ch02.py, ...)."""
    folder = Path(__file__).resolve().parent / "planted"
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    found: list[PlantedError] = []
    for path in sorted(folder.glob("ch[0-9]*.py")):
        found.extend(importlib.import_module(f"planted.{path.stem}").PLANTED)
    return found


PLANTED: list[PlantedError] = _collect()


def by_chapter() -> dict[str, list[PlantedError]]:
    out: dict[str, list[PlantedError]] = {}
    for p in PLANTED:
        out.setdefault(p.chapter, []).append(p)
    return out


def plant(error_id: str) -> PlantedError:
    """Install the planted error ``error_id`` in the running interpreter's clkit (see module docstring)."""
    matches = [p for p in PLANTED if p.id == error_id]
    if len(matches) != 1:
        raise ValueError(f"error_id must name exactly one planted error, got {error_id!r}")
    p = matches[0]
    parts = p.target.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable prefix is the module
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    else:
        raise ValueError(f"target {p.target!r} names no importable module")
    for name in parts[cut:-1]:  # a class attribute: "clkit.mixtures.GaussianMixture.sample"
        owner = getattr(owner, name)
    attr = parts[-1]
    original = getattr(owner, attr)
    wrong = p.make(original)
    setattr(owner, attr, wrong)
    for name, mod in list(sys.modules.items()):
        if (name == "clkit" or name.startswith("clkit.")) and mod is not None:
            for key, value in list(vars(mod).items()):
                if value is original:
                    setattr(mod, key, wrong)
    return p
