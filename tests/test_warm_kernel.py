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
    old = {k: os.environ.get(k) for k in ("CLBOOK_PROBE", "CLBOOK_EXTRA", "PYTHONPATH")}
    os.environ.update({"CLBOOK_PROBE": "seen", "CLBOOK_EXTRA": str(tmp_path / "extra"),
                       "PYTHONPATH": str(tmp_path / "extra")})
    try:
        client = NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}, **extra)
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
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
