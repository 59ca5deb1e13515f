"""The repository keeps its promises to readers: two commands, synced notebooks, agreeing dependencies."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import BOOK, REPO
from sync_notebooks import chapters, repository_url, sync

CONDA_NAMES = {"pytorch": "torch"}


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirement_spec(req: str) -> str:
    return req.strip()[len(_requirement_name(req)):].replace(" ", "")


def test_environment_yml_and_pyproject_list_the_same_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip_reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    pip_specs = {_requirement_name(r): _requirement_spec(r) for r in pip_reqs}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda_reqs = [d for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip"))]
    conda_specs = {CONDA_NAMES.get(_requirement_name(r), _requirement_name(r)): _requirement_spec(r) for r in conda_reqs}
    assert conda_specs == pip_specs


def test_clkit_pins_no_exact_versions_and_requires_torch_2_2():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "torch>=2.2" in project["dependencies"]
    every = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert not [r for r in every if "==" in r]


def test_notebooks_are_in_sync_with_their_myst_sources():
    stale = sync(check=True)
    assert not stale, f"out of sync (run `python scripts/sync_notebooks.py`): {stale}"


def test_every_chapter_follows_the_template():
    url = repository_url()
    for path in chapters():
        text = path.read_text()
        assert "```{colab-badge}" in text, path.name
        assert f'"clkit @ git+{url}"' in text, path.name
        assert ":tags: [parameters]" in text, path.name
        assert re.search(r"claims\.table\(\)", text), path.name
        assert "```{bibliography}" in text, path.name
        setup_cell = text.split("```{code-cell}", 2)[1]
        assert "torch" not in setup_cell.split("pip")[1].split("check=True")[0], "never reinstall torch in Colab"


def test_readme_quick_start_has_exactly_two_commands_and_ci_runs_the_second():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    commands = [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert "build-book" in commands[0] and "run-tests" in commands[1]
    assert commands[1].strip() in (REPO / ".ci" / "run").read_text()


def test_book_config_enforces_execution_and_errors():
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache"  # filled in parallel, see below
    assert "parallel_execution" in config["sphinx"]["local_extensions"]
    assert config["execute"]["raise_on_error"] is True
    assert config["execute"]["timeout"] > 0
    build = (REPO / "scripts" / "build-book.sh").read_text()
    assert "-W" in build and "--keep-going" in build and "-n" in build
    assert "rm -rf book/_build/claims book/_build/.jupyter_cache" in build  # executes every chapter
