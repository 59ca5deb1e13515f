"""Jupyter kernels forked from a warm process: a fresh kernel per chapter without paying the imports.

Every chapter runs in its own kernel, and on this book's 2-core machines a cold kernel spends
4-5 s before the chapter's first line: the kernel's start (IPython, ipykernel, zmq) and the
imports every chapter makes (torch alone is 2 s, SymPy 0.5 s, SciPy 0.4 s). The build executes
six chapters, the test suite does it again: the same imports, twelve times.

This module imports those libraries *once*, in the process that drives the executions
(:func:`preload`; no computation, no thread started, so forking stays safe), and then starts each
kernel by ``os.fork()`` of that process instead of a new interpreter
(:class:`WarmKernelManager`, for ``nbclient.NotebookClient(kernel_manager_class=...)``). The child
becomes an ordinary ipykernel on the connection file jupyter_client wrote, in its own session,
with the notebook's folder and environment: a new process with an empty namespace, which has
only the imported modules in common with its siblings. Nothing is cached between chapters: every
cell is executed, every claim recomputed. pyplot is preloaded with its backend unresolved, and
the child sets the backend from its own ``$MPLBACKEND`` as ``import matplotlib`` would (the inline
backend ipykernel asks for); clkit is not preloaded (``bench_book.py --rev`` imports another
clkit through ``$PYTHONPATH``, which the child puts on ``sys.path``).

Used by ``scripts/execute_parallel.py`` (the build's parallel execution) and by
``benchmarks/bench_book.py --kernel warm``. Where ``os.fork`` does not exist, or the kernel
command is not this interpreter's ipykernel, the ordinary launch is used.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

#: What every chapter's kernel imports, heaviest first; importing them starts no thread.
PRELOAD = ("torch", "sympy", "scipy.optimize", "scipy.special", "scipy.linalg", "numpy",
           "matplotlib.pyplot", "contourpy", "PIL.PngImagePlugin", "ipykernel.kernelapp",
           "ipykernel.ipkernel", "IPython", "myst_nb", "nbformat")

_preloaded = False


def preload() -> None:
    """Import :data:`PRELOAD` in this process (once), so that forked kernels start warm."""
    global _preloaded
    if _preloaded:
        return
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    _interpreter_path()
    _preloaded = True


_INTERPRETER_PATH: list[str] = []


def _interpreter_path() -> list[str]:
    """``sys.path`` of a new ``python`` without ``$PYTHONPATH``, less its first (script) entry."""
    if not _INTERPRETER_PATH:
        import json
        import subprocess

        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        out = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"],
                             capture_output=True, text=True, env=env, check=True).stdout
        _INTERPRETER_PATH.extend(json.loads(out))
    return _INTERPRETER_PATH


def available() -> bool:
    """Warm kernels need ``os.fork`` (Linux, macOS)."""
    return hasattr(os, "fork")


class _ForkedKernel:
    """The little of :class:`subprocess.Popen` that jupyter_client uses, for a forked child."""

    stdin = stdout = stderr = None  # the child's are not pipes to this process

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"kernel {self.pid} still running after {timeout} s")
            time.sleep(0.01)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _become_kernel(argv: list[str], env: dict[str, str], cwd: str | None) -> None:
    """In the forked child: turn this process into an ipykernel with ``argv`` (``-f file``)."""
    os.setsid()  # its own session and process group, as jupyter_client's launcher gives it
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if cwd:
        os.chdir(cwd)
    # sys.path as `python -m ipykernel_launcher` sets it: the kernel's $PYTHONPATH, then the
    # interpreter's own entries (not what the driving process added: its script's folder, its
    # $PYTHONPATH, sys.path.insert calls)
    new_extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [*new_extra, *(p for p in sys.path if p in _interpreter_path())]
    os.environ.clear()
    os.environ.update(env)
    # the parent was inside an asyncio loop when it forked: the child starts with none
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(asyncio.new_event_loop())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = [sys.executable, "-m", "ipykernel_launcher", *argv]
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(argv)  # sets $MPLBACKEND to the inline backend unless the environment has one
    if "matplotlib" in sys.modules and os.environ.get("MPLBACKEND"):
        # what `import matplotlib` does with $MPLBACKEND, had it been imported here
        sys.modules["matplotlib"].rcParams["backend"] = os.environ["MPLBACKEND"]
    app.start()


class ForkProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, launching the kernel by ``fork`` when it can."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        argv = _ipykernel_argv(cmd)
        if argv is None or not available():
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())
        # the kernel exits if this process dies (the trait's default was read at import)
        argv = [*argv, f"--IPKernelApp.parent_handle={os.getpid()}"]
        cwd = kwargs.get("cwd")
        sys.stdout.flush()
        sys.stderr.flush()
        # Objects alive now (the preloaded modules) move to the permanent generation: the
        # child's garbage collector then never traverses them. Otherwise each of its full
        # collections writes to every one of their GC headers, and every page it writes is
        # copied from the parent (copy-on-write): cells ran up to 25 % slower than in a cold
        # kernel. (Python's gc.freeze documentation describes this use.)
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the parent's code
            code = 1
            try:
                _become_kernel(argv, env, None if cwd is None else str(cwd))
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 0
            except BaseException:  # noqa: BLE001 -- report, then leave without the parent's atexit
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.process = _ForkedKernel(pid)  # type: ignore[assignment]
        self.pid = pid
        self.pgid = pid  # the child's setsid() makes it a group leader
        self.cwd = cwd
        return self.connection_info


def _ipykernel_argv(cmd: list[str]) -> list[str] | None:
    """``[-f, file, ...]`` when ``cmd`` runs this interpreter's ipykernel, else ``None``."""
    if len(cmd) >= 3 and cmd[1:3] == ["-m", "ipykernel_launcher"]:
        if os.path.realpath(cmd[0]) == os.path.realpath(sys.executable) or cmd[0] == "python":
            return list(cmd[3:])
    return None


class WarmKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernels are forked from this (preloaded) process."""

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        if type(self.provisioner) is LocalProvisioner:
            self.provisioner.__class__ = ForkProvisioner
        return cmd, kw
