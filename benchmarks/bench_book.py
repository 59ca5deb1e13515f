"""Benchmark the book itself: execute each chapter in a fresh kernel and time it (issue 19).

    python benchmarks/bench_book.py --scale default --repeat 3          # every chapter
    python benchmarks/bench_book.py --scale smoke 02_projection_heads    # one chapter
    python benchmarks/bench_book.py --scale smoke --profile 15          # + the hottest functions
    python benchmarks/bench_book.py --build --scale default --repeat 2  # whole builds, parallel vs serial
    python benchmarks/bench_book.py --rev HEAD ...                      # a commit instead of the work tree

Per chapter, over ``--repeat`` runs each in a fresh kernel (as ``jupyter-book build`` executes it,
in the chapter's folder, with ``CLKIT_SCALE`` set): the median wall time from kernel start to the last
cell, the kernel start-up, the import of clkit and pyplot (a first cell, so the chapter's own imports
are then free), the chapter's cells, the kernel's CPU time (user + system, all its threads) and
the five most expensive cells. ``--profile N`` runs the chapter once more under cProfile inside
the kernel and prints the N functions with the most own time and the N clkit functions with the
most cumulative time.

``--build`` times whole builds of a copy of the book (never ``book/_build``) with
``jupyter-book build <book> -W -n --keep-going``, as ``scripts/build-book.sh`` does, in two modes
taken in turn (parallel, serial, parallel, serial, ...; ``--repeat`` pairs): *parallel* is the
book's own (``book/_ext/parallel_execution.py`` runs the chapters through jupyter-cache's
local-parallel executor), *serial* sets ``CLBOOK_PARALLEL_EXECUTION=0`` (myst-nb executes each
chapter as it reads it). It prints each pair's ratio parallel/serial (pairing keeps the ratio
meaningful when the machine's load drifts), and compares the executed notebooks of all builds cell
by cell (every output's text, HTML and image data): run-to-run and mode-to-mode variation.

Timings depend on what else runs: every table carries ``nproc``, the CPU model and the load
average (1 min) before and after each measurement. Results also go to
``benchmarks/results/bench_book-<scale>-<time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from run_chapter import temporary_environment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
IMPORT_CELL = "import clkit\nimport matplotlib.pyplot"
CPU_CELL = ("import resource as _r\n_u = _r.getrusage(_r.RUSAGE_SELF)\n"
            "print('__bench_cpu__', _u.ru_utime + _u.ru_stime)")


# --- the machine -------------------------------------------------------------------------------

def machine() -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f"{kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    import torch

    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": mem, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def load() -> float:
    return os.getloadavg()[0]


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat; (0, 0) where it does not exist.

    Steal is the time the hypervisor gave this VM's virtual CPUs to someone else: on a shared host
    it inflates wall times without any load showing inside the VM, so each run reports it.
    """
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of all CPU time stolen by the hypervisor between two :func:`cpu_ticks` readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else float("nan")


# --- the book to measure -----------------------------------------------------------------------

def snapshot(rev: str | None, into: Path) -> Path:
    """The repository root to measure: the work tree, or ``rev``'s book and clkit extracted."""
    if rev is None:
        return REPO
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "book", "clkit"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "x", "-C", str(into)], input=archive, check=True)
    return into


def toc_chapters(book: Path) -> list[str]:
    toc = yaml.safe_load((book / "_toc.yml").read_text(encoding="utf-8"))
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [Path(f).stem for f in files if f.startswith("chapters/")]


def kernel_env(root: Path, scale: str, claims_dir: Path) -> dict[str, str]:
    env = {"CLKIT_SCALE": scale, "CLKIT_CLAIMS_DIR": str(claims_dir)}
    if root != REPO:  # the snapshot's clkit before the editable install of the work tree
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return env


# --- one chapter -------------------------------------------------------------------------------

def _label(source: str) -> str:
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line[:48] + ("…" if len(line) > 48 else "")
    return "(empty)"


def execute_once(path: Path, env: dict[str, str], timeout: int, profile_to: Path | None = None) -> dict:
    """Execute one chapter in a fresh kernel; return the timings (and the error, if a cell failed)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    notebook = jupytext.read(path, fmt="md:myst")
    code = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    labels = {i: f"[{k}] {_label(c.source)}" for k, (i, c) in enumerate(code, 1)}
    head = [nbformat.v4.new_code_cell(IMPORT_CELL)]
    tail = [nbformat.v4.new_code_cell(CPU_CELL)]
    if profile_to is not None:
        head.append(nbformat.v4.new_code_cell(
            "import cProfile as _cp\n_bench_profile = _cp.Profile()\n_bench_profile.enable()"))
        tail.insert(0, nbformat.v4.new_code_cell(
            f"_bench_profile.disable()\n_bench_profile.dump_stats({str(profile_to)!r})"))
    n_head = len(head)
    notebook.cells = head + notebook.cells + tail
    out: dict = {"cells": {}, "error": None, "load_before": load()}
    ticks = cpu_ticks()
    with temporary_environment(env):
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        t0 = time.perf_counter()
        with client.setup_kernel():
            t1 = time.perf_counter()
            out["kernel_start"] = t1 - t0
            try:
                for index, cell in enumerate(notebook.cells):
                    if cell.cell_type != "code":
                        continue
                    c0 = time.perf_counter()
                    client.execute_cell(cell, index)
                    seconds = time.perf_counter() - c0
                    if index == 0:
                        out["imports"] = seconds
                    elif index - n_head in labels:
                        out["cells"][labels[index - n_head]] = seconds
                    elif cell.source == CPU_CELL:
                        text = "".join(o.get("text", "") for o in cell.outputs)
                        out["kernel_cpu"] = float(text.split("__bench_cpu__")[1].split()[0])
            except Exception as err:  # a failing cell: keep the timings so far
                out["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:200]}"
            out["wall"] = time.perf_counter() - t0
    out["load_after"] = load()
    out["steal"] = steal_share(ticks, cpu_ticks())
    return out


def bench_chapter(root: Path, stem: str, scale: str, repeat: int, timeout: int) -> dict:
    path = root / "book" / "chapters" / f"{stem}.md"
    runs = []
    with tempfile.TemporaryDirectory() as claims:
        for r in range(repeat):
            run = execute_once(path, kernel_env(root, scale, Path(claims)), timeout)
            runs.append(run)
            status = "FAILED " + run["error"] if run["error"] else "ok"
            print(f"  {stem} run {r + 1}/{repeat}: {run['wall']:.1f} s ({status}), load {run['load_before']:.1f}"
                  f" -> {run['load_after']:.1f}, steal {100 * run['steal']:.1f} %", file=sys.stderr, flush=True)
            if run["error"]:
                break
    ok = [r for r in runs if not r["error"]] or runs
    med = lambda key: statistics.median(r.get(key, float("nan")) for r in ok)
    cells: dict[str, list[float]] = {}
    for r in ok:
        for label, s in r["cells"].items():
            cells.setdefault(label, []).append(s)
    top = sorted(((statistics.median(v), k) for k, v in cells.items()), reverse=True)[:5]
    return {
        "chapter": stem, "scale": scale, "runs": len(runs), "failed": runs[-1]["error"],
        "wall": med("wall"), "wall_min": min(r["wall"] for r in ok), "wall_max": max(r["wall"] for r in ok),
        "kernel_start": med("kernel_start"), "imports": med("imports"),
        "cells_total": statistics.median(sum(r["cells"].values()) for r in ok),
        "kernel_cpu": med("kernel_cpu"), "top_cells": top,
        "load": [min(r["load_before"] for r in runs), max(r["load_after"] for r in runs)],
        "steal": [min(r["steal"] for r in runs), max(r["steal"] for r in runs)],
    }


def profile_chapter(root: Path, stem: str, scale: str, timeout: int, n: int) -> str:
    path = root / "book" / "chapters" / f"{stem}.md"
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "profile.pstats"
        run = execute_once(path, kernel_env(root, scale, Path(tmp)), timeout, profile_to=stats_file)
        if not stats_file.exists():
            return f"{stem}: no profile ({run['error']})"
        stats = pstats.Stats(str(stats_file))
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{_short(file)}:{line}({func})"))
    lines = [f"### {stem} at scale {scale}: {run['wall']:.1f} s under cProfile (profiling slows Python code)",
             "", f"Own time (top {n}):", "", "| own s | cumulative s | calls | function |", "|---:|---:|---:|---|"]
    lines += [f"| {tt:.2f} | {ct:.2f} | {nc:,} | `{name}` |" for tt, ct, nc, name in sorted(rows, reverse=True)[:n]]
    lines += ["", f"clkit functions by cumulative time (top {n}):", "", "| cumulative s | own s | calls | function |",
              "|---:|---:|---:|---|"]
    ours = sorted(((ct, tt, nc, name) for tt, ct, nc, name in rows if name.startswith("clkit/")), reverse=True)
    lines += [f"| {ct:.2f} | {tt:.2f} | {nc:,} | `{name}` |" for ct, tt, nc, name in ours[:n]]
    return "\n".join(lines)


def _short(file: str) -> str:
    for marker in ("site-packages/", "/clkit/"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            return ("clkit/" + tail) if marker == "/clkit/" else tail
    return Path(file).name if file.startswith("/") else file


def chapter_table(rows: list[dict]) -> str:
    lines = ["| chapter | scale | runs | median wall s (min–max) | kernel start s | import clkit s | cells s "
             "| kernel CPU s | load (1 min) | steal % | five most expensive cells (median s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        top = "; ".join(f"{label.replace('|', '/')} {s:.1f}" for s, label in r["top_cells"])
        wall = f"{r['wall']:.1f} ({r['wall_min']:.1f}–{r['wall_max']:.1f})"
        if r["failed"]:
            wall += " FAILED"
        lines.append(f"| {r['chapter']} | {r['scale']} | {r['runs']} | {wall} | {r['kernel_start']:.1f} | "
                     f"{r['imports']:.1f} | {r['cells_total']:.1f} | {r['kernel_cpu']:.1f} | "
                     f"{r['load'][0]:.1f}–{r['load'][1]:.1f} | {100 * r['steal'][0]:.0f}–{100 * r['steal'][1]:.0f} | {top} |")
    return "\n".join(lines)


# --- whole builds ------------------------------------------------------------------------------

def _outputs(build: Path) -> dict[str, list[str]]:
    """Each executed notebook's code-cell outputs (text, HTML, images), as comparable strings."""
    import nbformat

    found = {}
    for ipynb in sorted((build / "_build" / "jupyter_execute").rglob("*.ipynb")):
        nb = nbformat.read(ipynb, as_version=4)
        cells = []
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            parts = []
            for o in cell.get("outputs", []):
                if "text" in o:
                    parts.append(str(o["text"]))
                for mime, value in sorted((o.get("data") or {}).items()):
                    parts.append(f"{mime}:{value if isinstance(value, str) else json.dumps(value, sort_keys=True)}")
            cells.append("\n".join(parts))
        found[str(ipynb.relative_to(build / "_build" / "jupyter_execute"))] = cells
    return found


def _differences(a: dict[str, list[str]], b: dict[str, list[str]]) -> dict[str, int]:
    diff = {}
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        if x is None or y is None or len(x) != len(y):
            diff[name] = -1
        else:
            n = sum(p != q for p, q in zip(x, y))
            if n:
                diff[name] = n
    return diff


MODES = {"parallel": "1", "serial": "0"}  # value of $CLBOOK_PARALLEL_EXECUTION


def bench_build(root: Path, scale: str, repeat: int, work: Path) -> list[dict]:
    """``repeat`` pairs of whole builds (parallel, serial) of a copy of ``root``'s book; then
    their outputs compared pairwise."""
    results, outputs = [], {}
    bin_dir = Path(sys.executable).parent
    for r in range(repeat):
        for mode, flag in MODES.items():
            dest = work / f"build-{mode}-{r + 1}"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(root / "book", dest / "book", ignore=shutil.ignore_patterns("_build"))
            book = dest / "book"
            env = dict(os.environ, CLKIT_SCALE=scale, CLBOOK_PARALLEL_EXECUTION=flag)
            env["CLKIT_CLAIMS_DIR"] = str(dest / "claims")
            if root != REPO:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
            env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
            before = load()
            t0 = time.perf_counter()
            step = subprocess.run(
                [str(bin_dir / "jupyter-book"), "build", str(book), "-W", "-n", "--keep-going"],
                env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            ok = step.returncode == 0
            (dest / "build.log").write_text(step.stdout + step.stderr)
            row = {"mode": mode, "run": r + 1, "seconds": seconds, "ok": ok, "load": [before, load()]}
            print(f"  {mode} build run {r + 1}: {seconds:.1f} s ({'ok' if ok else 'FAILED'}), "
                  f"load {before:.1f} -> {row['load'][1]:.1f}", file=sys.stderr, flush=True)
            results.append(row)
            if ok:
                outputs[(mode, r + 1)] = _outputs(book)
    comparisons = {}
    keys = sorted(outputs)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            comparisons[f"{a[0]}-{a[1]} vs {b[0]}-{b[1]}"] = _differences(outputs[a], outputs[b])
    results.append({"comparisons": comparisons})
    return results


def build_table(results: list[dict]) -> str:
    lines = ["| build | run | wall s | load (1 min) | ok |", "|---|---:|---:|---:|---|"]
    runs = [r for r in results if "mode" in r]
    for r in runs:
        lines.append(f"| {r['mode']} | {r['run']} | {r['seconds']:.1f} | "
                     f"{r['load'][0]:.1f}–{r['load'][1]:.1f} | {'yes' if r['ok'] else 'FAILED'} |")
    ratios = [p["seconds"] / s["seconds"] for p in runs if p["mode"] == "parallel"
              for s in runs if s["mode"] == "serial" and s["run"] == p["run"]]
    if ratios:
        lines += ["", "parallel / serial wall time, pair by pair: "
                  + ", ".join(f"{x:.3f}" for x in ratios)
                  + f" (median {statistics.median(ratios):.3f})"]
    comparisons = results[-1].get("comparisons", {})
    if comparisons:
        lines += ["", "Code cells whose outputs differ (per executed notebook; -1: different cell count):", ""]
        for pair, diff in comparisons.items():
            lines.append(f"- {pair}: " + (", ".join(f"{k} {v}" for k, v in diff.items()) or "none"))
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="file stems under book/chapters (default: all in _toc.yml)")
    parser.add_argument("--scale", default="default", choices=("smoke", "default", "large"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per chapter (or pairs of builds)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile each chapter once with cProfile and print the N hottest functions")
    parser.add_argument("--build", action="store_true", help="time whole builds (jupyter-book build) instead")
    parser.add_argument("--rev", default=None, help="measure this commit's book and clkit (default: the work tree)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="clbook-bench-"))
    root = snapshot(args.rev, work / "src")
    rev = args.rev or "work tree"
    if args.rev:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.rev],
                             capture_output=True, text=True).stdout.strip()
    info = machine()
    header = (f"{info['date']} · {rev} · {info['nproc']} cores ({info['cpu']}), {info['memory']}, Python "
              f"{info['python']}, torch {info['torch']} ({info['torch_threads']} threads) · load average (1 min) "
              f"at start {load():.1f}")
    print(header, flush=True)
    record: dict = {"machine": info, "rev": rev, "scale": args.scale}
    if args.build:
        results = bench_build(root, args.scale, args.repeat, work / "builds")
        print(f"\nWhole build at scale {args.scale}:\n")
        print(build_table(results))
        print(f"(builds kept in {work / 'builds'})")
        record["builds"] = results
    else:
        stems = args.chapters or toc_chapters(root / "book")
        rows = []
        for stem in stems:
            rows.append(bench_chapter(root, stem, args.scale, args.repeat, args.timeout))
        print()
        print(chapter_table(rows))
        record["chapters"] = rows
        if args.profile:
            record["profiles"] = []
            for stem in stems:
                text = profile_chapter(root, stem, args.scale, args.timeout, args.profile)
                print("\n" + text)
                record["profiles"].append(text)
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average (1 min) at end {load():.1f}")
    out = RESULTS / f"bench_book-{'build-' if args.build else ''}{args.scale}-{stamp}.json"
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"results: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
