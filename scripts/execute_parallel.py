"""Execute the book's notebooks in parallel into a fresh jupyter-cache, before ``jupyter-book build``.

    python scripts/execute_parallel.py book --jobs 2      # prints the derived config's path

The chapters are independent notebooks, so on a machine with several cores they can execute at
the same time. Jupyter Book 1 (myst-nb) executes them one after the other; in its ``cache`` mode
it takes a notebook's outputs from a jupyter-cache database instead, when the cache holds a
notebook whose code cells are identical. This script

1. deletes the cache ``<book>/_build/.jupyter_cache`` (nothing from an earlier build is reused:
   the cache's key is the code cells only, not clkit, the scale or the environment),
2. executes every notebook of the book (MyST notebooks listed in ``_toc.yml``) in a fresh kernel
   per notebook, ``--jobs`` at a time, longest first (by file size), in the notebook's folder,
   exactly as myst-nb does (``jupyter_cache.executors.utils.single_nb_execution``, same timeout,
   same notebook reader, so the same cache key); each kernel is forked from a process that has
   already imported torch, SymPy, SciPy and ipykernel (``scripts/warm_kernel.py``: 3-4 s less per
   notebook on two cores; ``--cold`` starts each as a new interpreter instead),
3. stores the executed notebooks in the cache and writes ``<book>/_build/_config.parallel.yml``:
   the book's ``_config.yml`` with ``execute_notebooks: cache`` and that cache (and the local
   extensions' folders made absolute, since they are resolved from the config file's folder), plus
   ``scripts/parallel_cache_ext.py``, which makes myst-nb write the cached outputs into
   ``_build/jupyter_execute/*.ipynb`` as a serial build does.

``jupyter-book build <book> --config <book>/_build/_config.parallel.yml`` then builds from those
outputs. A notebook that failed here is not cached: the build executes it again and reports the
failure exactly as a plain build does. ``book/_config.yml`` itself keeps ``execute_notebooks:
force``, so ``jupyter-book build book/`` on a clean checkout executes everything, serially.
Exit status 0 even if a notebook failed (the build reports it); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import warm_kernel  # noqa: E402


def toc_notebooks(book: Path) -> list[Path]:
    """The MyST notebooks among the documents listed in ``<book>/_toc.yml``."""
    from myst_nb.core.read import is_myst_markdown_notebook

    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    files: list[str] = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))
            for part in entry.get("parts", []):
                walk(part.get("chapters", []))

    walk(toc.get("chapters", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    out = []
    for name in files:
        path = book / (name if name.endswith(".md") else f"{name}.md")
        if path.is_file() and is_myst_markdown_notebook(path.read_text(encoding="utf-8")):
            out.append(path)
    return out


def read_notebook(path: Path):
    """Read a MyST notebook as myst-nb does (the cache key is its code cells and kernelspec)."""
    from myst_nb.core.read import read_myst_markdown_notebook

    return read_myst_markdown_notebook(path.read_text(encoding="utf-8"), add_source_map=True, path=path)


def _execute(path: str, timeout: int, allow_errors: bool, warm: bool):
    """Worker: execute one notebook in its folder; return (path, notebook, seconds, error text)."""
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = read_notebook(Path(path))
    extra = {}
    if warm:  # a fresh kernel forked from this preloaded worker (scripts/warm_kernel.py)
        from warm_kernel import WarmKernelManager

        extra["kernel_manager_class"] = WarmKernelManager
    result = single_nb_execution(notebook, cwd=str(Path(path).parent), timeout=timeout,
                                 allow_errors=allow_errors, meta_override=True, **extra)
    error = None if result.err is None else (result.exc_string or repr(result.err))
    return path, notebook, result.time, error


def pre_execute(book: Path, jobs: int, log=print, warm: bool = True) -> Path:
    """Execute the book's notebooks ``jobs`` at a time into a fresh cache; return the config path.

    ``warm``: start each notebook's kernel by forking a process that has already imported torch,
    SymPy, SciPy and ipykernel (``scripts/warm_kernel.py``), instead of a new interpreter.
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    book = book.resolve()
    config = yaml.safe_load((book / "_config.yml").read_text(encoding="utf-8")) or {}
    execute = config.setdefault("execute", {})
    timeout = int(execute.get("timeout", 30))
    allow_errors = bool(execute.get("allow_errors", False))
    build = book / "_build"
    cache_dir = build / ".jupyter_cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    build.mkdir(parents=True, exist_ok=True)
    cache = get_cache(str(cache_dir))

    notebooks = sorted(toc_notebooks(book), key=lambda p: p.stat().st_size, reverse=True)
    start = time.perf_counter()
    warm = warm and warm_kernel.available()
    context = None
    if warm:  # import once here; the workers are forked from this process and inherit it
        warm_kernel.preload()
        context = multiprocessing.get_context("fork")
        log(f">> kernels forked from a preloaded process ({', '.join(warm_kernel.PRELOAD)}): "
            f"{time.perf_counter() - start:.1f} s of imports, once")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_execute, str(p), timeout, allow_errors, warm) for p in notebooks]
        for future in cf.as_completed(futures):
            path, notebook, seconds, error = future.result()
            name = Path(path).relative_to(book)
            if error is not None:
                log(f">> {name}: FAILED after {seconds:.1f} s (the build re-executes it and reports why)")
                continue
            cache.cache_notebook_bundle(
                CacheBundleIn(notebook, path, data={"execution_seconds": seconds}),
                check_validity=False, overwrite=True,
            )
            log(f">> {name}: executed in {seconds:.1f} s")
    log(f">> {len(notebooks)} notebooks executed {jobs} at a time in {time.perf_counter() - start:.1f} s")

    execute["execute_notebooks"] = "cache"
    execute["cache"] = str(cache_dir)
    sphinx = config.setdefault("sphinx", {})
    local = sphinx.get("local_extensions") or {}
    for ext, folder in local.items():
        local[ext] = str((book / folder).resolve())
    # write the cached outputs into _build/jupyter_execute/*.ipynb too, as a serial build does
    local["parallel_cache_ext"] = str(Path(__file__).resolve().parent)
    sphinx["local_extensions"] = local
    derived = build / "_config.parallel.yml"
    derived.write_text("# Generated by scripts/execute_parallel.py from _config.yml; do not edit.\n"
                       + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return derived


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("book", type=Path, help="the book's folder (holds _config.yml and _toc.yml)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="notebooks at a time")
    parser.add_argument("--cold", action="store_true",
                        help="start every kernel as a new interpreter (no warm fork)")
    args = parser.parse_args()
    if args.jobs < 1 or not (args.book / "_config.yml").is_file():
        parser.error("need --jobs >= 1 and a book folder with _config.yml")
    derived = pre_execute(args.book, args.jobs, log=lambda m: print(m, file=sys.stderr),
                          warm=not args.cold)
    print(derived)
    return 0


if __name__ == "__main__":
    sys.exit(main())
