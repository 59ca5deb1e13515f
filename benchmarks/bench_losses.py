"""Benchmark of ``clkit.info_nce``: dense versus chunked (tiled) versus a naive reference.

For every batch size N (d = 128, float32) and every method, a *fresh subprocess* runs forward +
backward ``repeats`` times and reports the median wall time, the median process CPU time and the
peak resident memory of the process (``resource.getrusage(...).ru_maxrss``; on CUDA
``torch.cuda.max_memory_allocated``). The achieved throughput is counted on the dense algorithm's
flops, ``6 (2N)^2 d`` (the Gram matrix forward, its two products backward), and divided by the
GFLOP/s of ``torch.matmul`` on a ``(4096 x 128) @ (128 x 4096)`` product measured in the same run
(at its start and end; the median is used). On a shared machine wall time depends on the other
load; process CPU time (both threads) is reported beside it, and the throughput share is given both
ways (loss flops per wall second / matmul's, and per CPU-second / matmul's).

Methods:
  dense    ``info_nce(..., chunk_size=2N)``: the 2N x 2N logits, ``F.cross_entropy``, plain autograd.
  chunked  ``info_nce(..., chunk_size=TILE)``: tiles of the Gram matrix, recomputed in backward.
  naive    the textbook transcription most repositories use: ``exp`` of the full similarity matrix,
           masked sums, ``-log(pos / den)`` (no log-sum-exp; overflows for small temperatures).

Dense and naive run only while their estimated memory (4 matrices of (2N)^2 floats) fits in
``--dense-max-gib``; otherwise the table says so.

Usage (from the repository root, with the environment active)::

    python benchmarks/bench_losses.py                      # the README table (~20-30 min on 2 cores)
    python benchmarks/bench_losses.py --sizes 1024 4096    # a quick look
    python benchmarks/bench_losses.py --json results.json  # also keep the raw numbers
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

D = 128
MATMUL_SHAPE = (4096, D, 4096)
METHODS = ("dense", "chunked", "naive")


def _naive_nt_xent(z1, z2, temperature: float):
    """The usual unstabilised NT-Xent: exp of every similarity, masked sum, -log(pos/den)."""
    import torch
    import torch.nn.functional as F

    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = torch.exp(z @ z.T / temperature)
    mask = ~torch.eye(2 * n, dtype=torch.bool, device=z.device)
    denominator = (sim * mask).sum(dim=1)
    positive = torch.exp((z * z.roll(n, dims=0)).sum(dim=1) / temperature)
    return -torch.log(positive / denominator).mean()


def _peak_bytes(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def worker(method: str, n: int, repeats: int, tile: int, temperature: float, device_name: str | None) -> dict:
    """Run one configuration in this (fresh) process and return its measurements."""
    import torch

    import clkit

    device = torch.device(device_name) if device_name else clkit.default_device()
    generator = clkit.make_generator(0, device)
    if method == "matmul":
        m, k, p = MATMUL_SHAPE
        a = torch.randn(m, k, generator=generator, device=device)
        b = torch.randn(k, p, generator=generator, device=device)
        walls, cpus = [], []
        for _ in range(repeats + 1):
            wall, cpu = time.perf_counter(), time.process_time()
            torch.matmul(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        flops = 2 * m * k * p
        return {"gflops": flops / statistics.median(walls[1:]) / 1e9, "gflops_cpu": flops / statistics.median(cpus[1:]) / 1e9}

    z1 = torch.randn(n, D, generator=generator, device=device).requires_grad_()
    z2 = (z1.detach() + 0.5 * torch.randn(n, D, generator=generator, device=device)).requires_grad_()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _peak_bytes(device)
    if method == "dense":
        loss_fn = lambda: clkit.info_nce(z1, z2, temperature, chunk_size=2 * n)  # noqa: E731
    elif method == "chunked":
        loss_fn = lambda: clkit.info_nce(z1, z2, temperature, chunk_size=tile)  # noqa: E731
    else:
        loss_fn = lambda: _naive_nt_xent(z1, z2, temperature)  # noqa: E731
    if n <= 4096:  # warm-up (lazy initialisation, allocator); too costly to repeat for large N
        loss_fn().backward()
    walls, cpus, value = [], [], math.nan
    for _ in range(repeats):
        z1.grad = z2.grad = None
        wall, cpu = time.perf_counter(), time.process_time()
        loss = loss_fn()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        value = float(loss)
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "peak_bytes": _peak_bytes(device),
        "baseline_bytes": baseline,
        "loss": value,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def _run(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", *args], capture_output=True, text=True
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt_time(r: dict | None) -> str:
    if r is None:
        return "—"
    if "error" in r:
        return "error"
    return f"{r['wall']:.2f} ({r['cpu']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768, 65536])
    parser.add_argument("--repeats", type=int, default=3, help="repeats per configuration for N <= 8192")
    parser.add_argument("--large-repeats", type=int, default=1, help="repeats for N > 8192")
    parser.add_argument("--tile", type=int, default=1024, help="chunk_size of the chunked method")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--dense-max-gib", type=float, default=4.0)
    parser.add_argument("--device", default=None, help="default: clkit.default_device()")
    parser.add_argument("--json", default=None, help="also write the raw measurements here")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "N", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, n, repeats = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(worker(method, n, repeats, args.tile, args.temperature, args.device)))
        return

    common = ["--tile", str(args.tile), "--temperature", str(args.temperature)]
    if args.device:
        common += ["--device", args.device]
    matmul = [_run(["matmul", "0", "5", *common])]
    results: dict[int, dict[str, dict | None]] = {}
    for n in args.sizes:
        repeats = args.repeats if n <= 8192 else args.large_repeats
        dense_gib = 4 * (2 * n) ** 2 * 4 / 2**30
        results[n] = {}
        for method in METHODS:
            if method != "chunked" and dense_gib > args.dense_max_gib:
                results[n][method] = None
                continue
            results[n][method] = _run([method, str(n), str(repeats), *common])
            print(f"N={n} {method}: {results[n][method]}", file=sys.stderr, flush=True)
    matmul.append(_run(["matmul", "0", "5", *common]))
    mm_wall = statistics.median(r["gflops"] for r in matmul)
    mm_cpu = statistics.median(r["gflops_cpu"] for r in matmul)

    ok = lambda r: r is not None and "error" not in r  # noqa: E731
    baselines = [r["baseline_bytes"] for row in results.values() for r in row.values() if ok(r)]
    print(f"torch.matmul {MATMUL_SHAPE[0]}x{MATMUL_SHAPE[1]}x{MATMUL_SHAPE[2]}: wall "
          f"{matmul[0]['gflops']:.1f} / {matmul[-1]['gflops']:.1f} GFLOP/s, per CPU-second "
          f"{matmul[0]['gflops_cpu']:.1f} / {matmul[-1]['gflops_cpu']:.1f} (start / end of run); tile = {args.tile}; "
          f"process RSS before the loss (torch + inputs) {min(baselines) / 2**20:.0f}-{max(baselines) / 2**20:.0f} MiB")
    print()
    print("| N | dense s (cpu s) | chunked s (cpu s) | naive s (cpu s) | chunked / dense: wall (cpu) | "
          "peak RSS dense | peak RSS chunked | chunked % of matmul: wall (cpu) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, row in results.items():
        dense, chunked, naive = row["dense"], row["chunked"], row["naive"]
        if ok(dense) and ok(chunked):
            ratio = f"{chunked['wall'] / dense['wall']:.2f} ({chunked['cpu'] / dense['cpu']:.2f})"
        else:
            ratio = "—"
        mem = lambda r: f"{r['peak_bytes'] / 2**20:.0f} MiB" if ok(r) else "—"  # noqa: E731
        if ok(chunked):
            flops = 6 * (2 * n) ** 2 * D / 1e9
            share = f"{100 * flops / chunked['wall'] / mm_wall:.0f} % ({100 * flops / chunked['cpu'] / mm_cpu:.0f} %)"
        else:
            share = "—"
        print(f"| {n:,} | {_fmt_time(dense)} | {_fmt_time(chunked)} | {_fmt_time(naive)} | {ratio} | "
              f"{mem(dense)} | {mem(chunked)} | {share} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_gflops": matmul, "results": results}, indent=2))


if __name__ == "__main__":
    main()
