"""scripts/warm_kernel.py: a kernel forked from a preloaded process behaves as a new interpreter's.

The build executes chapters in such kernels (scripts/execute_parallel.py); these tests run the same
notebook in a warm and in a cold kernel and compare what the code inside can observe.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import warm_kernel  # noqa: E402
from conftest import MYST_FRONT_MATTER  # noqa: E402
from run_chapter import temporary_environment  # noqa: E402

pytestmark = pytest.mark.skipif(not warm_kernel.available(), reason="needs os.fork")

PROBE = [
    "import os, sys\nprint(os.getcwd())\nprint(os.environ.get('CLBOOK_PROBE'))",
    "print(sys.path[0] == os.environ['CLBOOK_EXTRA'], os.getcwd() in sys.path)",
    "import matplotlib.pyplot as plt, matplotlib\nprint(matplotlib.get_backend())",
    "fig, ax = plt.subplots(figsize=(2, 1)); ax.plot([0, 1]); fig",
    "import torch\ng = torch.Generator().manual_seed(7)\nprint(torch.randn(3, generator=g, dtype=torch.float64).tolist())",
    "print(os.getpid())",
]


def _run(tmp_path: Path, kernel_manager_class=None):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in PROBE]
    extra = {} if kernel_manager_class is None else {"kernel_manager_class": kernel_manager_class}
    env = {"CLBOOK_PROBE": "seen", "CLBOOK_EXTRA": str(tmp_path / "extra"),
           "PYTHONPATH": str(tmp_path / "extra")}
    with temporary_environment(env):
        client = NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}, **extra)
        client.execute()
    outputs = []
    for cell in nb.cells:
        texts = []
        for o in cell.outputs:
            if "text" in o:
                texts.append(o["text"])
            if "data" in o:
                texts.append(sorted(o["data"]))
        outputs.append(texts)
    return outputs


def test_a_warm_kernel_sees_what_a_cold_kernel_sees(tmp_path: Path):
    warm_kernel.preload()
    warm = _run(tmp_path, warm_kernel.WarmKernelManager)
    cold = _run(tmp_path)
    assert warm[:-1] == cold[:-1]  # all but the pid
    assert warm[0] == [f"{tmp_path}\nseen\n"]
    assert warm[1] == ["True False\n"]  # $PYTHONPATH first, and no folder the driver added
    assert warm[2] == ["module://matplotlib_inline.backend_inline\n"]
    assert ["image/png", "text/plain"] in warm[3]  # the figure, through the inline backend
    pid = int(warm[-1][0])
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):  # the kernel exited and was reaped
        os.kill(pid, 0)


def test_the_fork_is_used_only_for_this_interpreters_ipykernel():
    assert warm_kernel._ipykernel_argv([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"]) \
        == ["-f", "c.json"]
    assert warm_kernel._ipykernel_argv(["/usr/bin/other-python", "-m", "ipykernel_launcher", "-f", "c"]) \
        is None
    assert warm_kernel._ipykernel_argv(["julia", "-i", "kernel.jl", "c.json"]) is None


NOTEBOOK = MYST_FRONT_MATTER + """
# Page {k}

```{{code-cell}} ipython3
import os
import torch
print("page {k}", os.path.basename(os.getcwd()), os.environ.get("CLKIT_SCALE"))
```
"""


def test_parallel_execution_through_warm_kernels_fills_the_cache(tmp_path: Path):
    """scripts/execute_parallel.py, as build-book.sh runs it: two notebooks, two warm workers."""
    import subprocess

    from jupyter_cache import get_cache

    book = tmp_path / "book"
    (book / "pages").mkdir(parents=True)
    (book / "_config.yml").write_text("title: t\nexecute:\n  execute_notebooks: force\n  timeout: 120\n")
    (book / "_toc.yml").write_text("format: jb-book\nroot: pages/p1\nchapters:\n  - file: pages/p2\n")
    for k in (1, 2):
        (book / "pages" / f"p{k}.md").write_text(NOTEBOOK.format(k=k))
    env = {**os.environ, "CLKIT_SCALE": "smoke"}
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "execute_parallel.py"), str(book),
                          "--jobs", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "kernels forked from a preloaded process" in run.stderr
    assert run.stderr.count("executed in") == 2, run.stderr
    cache = get_cache(str(book / "_build" / ".jupyter_cache"))
    texts = sorted(o["text"] for record in cache.list_cache_records()
                   for cell in cache.get_cache_bundle(record.pk).nb.cells if cell.cell_type == "code"
                   for o in cell.outputs if "text" in o)
    assert texts == ["page 1 pages smoke\n", "page 2 pages smoke\n"]
    assert Path(run.stdout.strip()).is_file()  # the derived config
