"""Execute the book's chapters in parallel, before Sphinx reads them (jupyter-cache).

``jupyter-book build book/`` reads documents one after another, and myst-nb executes each
notebook as it is read, so one build keeps one of the machine's cores busy. With
``execute_notebooks: cache`` myst-nb takes a notebook's outputs from jupyter-cache when the cache
holds a run of the same code. This extension fills that cache first: on ``env-before-read-docs``
it adds every MyST notebook Sphinx is about to read to the cache's project and runs
jupyter-cache's own ``local-parallel`` executor on those without a cached run (one process per
core, each notebook in its own kernel, in the notebook's folder, with the book's timeout). Then
Sphinx reads every document as before, and myst-nb finds each notebook's outputs in the cache.

Only public APIs are used: ``jupyter_cache.get_cache``, ``JupyterCacheBase.add_nb_to_project``,
``list_unexecuted``, ``get_project_record`` and ``jupyter_cache.executors.load_executor``, and
myst-nb's ``is_myst_markdown_notebook`` and its resolved configuration ``env.mystnb_config``.

* Each kernel gets ``max(1, cores // workers)`` BLAS/OpenMP threads, so that the workers do not
  oversubscribe the cores.
* A notebook that fails in the parallel run fails the build here, with its traceback, when
  ``execute.raise_on_error`` is true (it would otherwise be executed a second time by myst-nb).
* myst-nb writes the notebook it read, not the one it merged from the cache, to its output folder
  (``_build/jupyter_execute/<page>.ipynb``: the download, the notebook zip and
  ``scripts/sync_notebooks.py`` read it), so on ``env-updated`` this extension writes there the
  cached run merged into the notebook (``merge_match_into_notebook``), outputs included, with the
  glued outputs taken out as myst-nb takes them out (``extract_glue_data_cell``).
* ``sphinx: config: clbook_parallel_execution: false`` (or ``$CLBOOK_PARALLEL_EXECUTION=0``)
  turns this off: myst-nb then executes each notebook as it reads it, as before. So does a
  machine with one core, and an execution mode other than ``cache``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from unittest import mock

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: jupyter-cache's reader for MyST Markdown notebooks (the one myst-nb itself passes it).
MYST_READER = {"type": "plugin", "name": "myst_nb_md"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _enabled(app: Sphinx, env: BuildEnvironment) -> bool:
    if os.environ.get("CLBOOK_PARALLEL_EXECUTION", "1") == "0":
        return False
    if not app.config.clbook_parallel_execution:
        return False
    return env.mystnb_config.execution_mode == "cache" and (os.cpu_count() or 1) > 1


def _notebooks(env: BuildEnvironment, docnames: list[str]) -> list[Path]:
    """The MyST Markdown notebooks among ``docnames``, largest file first.

    Larger chapters run longer, and jupyter-cache hands the notebooks to its workers in the
    order they were added, so this order lets the longest start first.
    """
    from myst_nb.core.read import is_myst_markdown_notebook

    paths = []
    for docname in docnames:
        path = Path(env.doc2path(docname))
        if path.suffix == ".md" and is_myst_markdown_notebook(path.read_text(encoding="utf-8")):
            paths.append(path)
    return sorted(paths, key=lambda p: p.stat().st_size, reverse=True)


def execute_in_parallel(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """Run every notebook about to be read that has no cached run, in parallel (see module)."""
    if not _enabled(app, env):
        return
    config = env.mystnb_config  # myst-nb's resolved configuration (cache path set by it)
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    paths = _notebooks(env, docnames)
    if not paths:
        return
    cache = get_cache(config.execution_cache_path)
    pks = [cache.add_nb_to_project(str(path), read_data=MYST_READER).pk for path in paths]
    app.clbook_cached_notebooks = {  # type: ignore[attr-defined]
        env.path2doc(str(path)): str(path) for path in paths}
    pending = cache.list_unexecuted(filter_pks=pks)
    if not pending:
        return
    cores = os.cpu_count() or 1
    workers = min(cores, len(pending))
    logger.info(
        f"[clbook] executing {len(pending)} notebook(s) with jupyter-cache's local-parallel "
        f"executor ({cores} processes, {max(1, cores // workers)} thread(s) per kernel)"
    )
    start = time.perf_counter()
    executor = load_executor("local-parallel", cache=cache)
    threads = {name: str(max(1, cores // workers)) for name in THREAD_VARIABLES}
    with mock.patch.dict(os.environ, threads):  # the kernels started inside inherit these
        result = executor.run_and_cache(
            filter_pks=[record.pk for record in pending],
            timeout=config.execution_timeout,
            allow_errors=config.execution_allow_errors,
        )
    logger.info(f"[clbook] parallel execution took {time.perf_counter() - start:.1f} s")
    failed = result.excepted + result.errored
    if failed and config.execution_raise_on_error:
        reports = []
        for uri in failed:
            record = cache.get_project_record(uri)
            reports.append(f"{uri}\n{record.traceback or '(no traceback recorded)'}")
        raise ExtensionError(
            "Executing notebook failed in the parallel run:\n" + "\n\n".join(reports)
        )


def write_executed_notebooks(app: Sphinx, env: BuildEnvironment) -> None:
    """Write each notebook read from the cache, with its cached outputs, to myst-nb's output folder."""
    pages = getattr(app, "clbook_cached_notebooks", None)
    if not pages:
        return
    import nbformat
    from jupyter_cache import get_cache
    from myst_nb.ext.glue import extract_glue_data_cell

    config = env.mystnb_config
    cache = get_cache(config.execution_cache_path)
    for docname, path in pages.items():
        try:
            _, merged = cache.merge_match_into_notebook(cache.get_project_notebook(path).nb)
        except KeyError:  # not cached (failed, or executed by myst-nb itself): left as written
            continue
        for cell in merged.cells:
            if cell.cell_type == "code":
                extract_glue_data_cell(cell)  # as myst-nb does to the notebook it writes
        target = Path(config.output_folder).joinpath(*docname.split("/")).with_suffix(".ipynb")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(nbformat.writes(merged), encoding="utf-8")


def setup(app: Sphinx) -> dict[str, object]:
    app.add_config_value("clbook_parallel_execution", True, "env", [bool])
    app.connect("env-before-read-docs", execute_in_parallel, priority=900)
    app.connect("env-updated", write_executed_notebooks, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
