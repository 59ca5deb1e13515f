"""Planted errors: each wrong formula of tests/planted/chNN.py, planted in clkit, must make its
chapter fail at smoke scale through one of the chapter's own *result or bound* claims (run with
derivation and identity failures deferred: ``plant_error.py --science``), not through a re-typing
of the formula or an unrelated crash, and every chapter carries at least three of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

import planted_errors
from audit_claims import toc_chapters
from conftest import BOOK, REPO
from plant_error import run_chapter_planted

CHAPTERS = toc_chapters(BOOK)
MIN_PER_CHAPTER = 3


def test_planted_errors_have_unique_ids_and_known_chapters():
    ids = [p.id for p in planted_errors.PLANTED]
    assert len(ids) == len(set(ids))
    assert {p.chapter for p in planted_errors.PLANTED} <= set(CHAPTERS)


@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_chapter_carries_at_least_three_planted_errors(stem: str):
    assert len(planted_errors.by_chapter().get(stem, [])) >= MIN_PER_CHAPTER


def test_planting_replaces_the_formula_everywhere_in_clkit():
    code = (
        "import sys; sys.path.insert(0, 'tests'); import clkit, clkit.losses, planted_errors\n"
        "before = clkit.info_nce_collapse_value(3)\n"
        "planted_errors.plant('01-collapse-log-2n')\n"
        "assert clkit.info_nce_collapse_value is clkit.losses.info_nce_collapse_value\n"
        "print(before, clkit.info_nce_collapse_value(3))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    assert before != after


def _caught_by_its_chapter(stem: str) -> None:
    outcomes = run_chapter_planted(stem)
    assert len(outcomes) == len(planted_errors.by_chapter().get(stem, []))
    missed = [f"{o.id}: {o.detail} (first failure: [{o.first_failed_kind}] {o.first_failed})"
              for o in outcomes if not o.caught]
    assert not missed, "planted errors the chapter did not catch:\n" + "\n".join(missed)


# One class per chapter: pytest-xdist's --dist loadscope schedules classes separately, so the
# chapters' planted errors spread over both workers.
for _stem in CHAPTERS:
    _name = "TestPlantedErrors_" + _stem

    def _test(self, stem: str = _stem) -> None:
        _caught_by_its_chapter(stem)

    _test.__name__ = "test_every_planted_error_is_caught_by_the_chapters_own_claims"
    globals()[_name] = pytest.mark.planted(type(_name, (), {_test.__name__: _test}))
