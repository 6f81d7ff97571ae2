#!/usr/bin/python3
"""Peer benchmark for accel's GEMM: numpy's matmul (OpenBLAS) on the shapes
of accel's BenchmarkDgemm/BenchmarkSgemm, and the table that compares them.

  bench_gemm.py numpy LABEL          print one measurement per shape, type and
                                     thread count (threads are set by the
                                     caller through OPENBLAS_NUM_THREADS; the
                                     label names the configuration)
  bench_gemm.py torch                torch.matmul (Debian's torch, on the
                                     system BLAS) the same way, threads from
                                     TORCH_NUM_THREADS
  bench_gemm.py table FILE...        read go test -bench output and numpy
                                     and torch lines, print median tables
                                     with ratios

Each peer line reads: numpy/LABEL/TYPE/SHAPE/t=T  GFLOP/s  GFLOP/cpu-s
(torch/torch/… for torch).
Used by scripts/bench-accel-gemm; see accel/README.md.
"""
import os
import re
import statistics
import sys
import time

SHAPES = [  # name, m, n, k as in accel/gemm_bench_test.go
    ("n=64", 64, 64, 64),
    ("n=256", 256, 256, 256),
    ("n=1024", 1024, 1024, 1024),
    ("4096x1024*1024x16", 4096, 16, 1024),
    ("16x1024*1024x4096", 16, 4096, 1024),
    ("256x1024*1024x1024", 256, 1024, 1024),
]


def numpy_run(label):
    import numpy as np

    threads = os.environ.get("OPENBLAS_NUM_THREADS", "?")
    rng = np.random.default_rng(1)
    for dtype, tname in ((np.float64, "Dgemm"), (np.float32, "Sgemm")):
        for name, m, n, k in SHAPES:
            a = rng.uniform(-1, 1, (m, k)).astype(dtype)
            b = rng.uniform(-1, 1, (k, n)).astype(dtype)
            c = np.empty((m, n), dtype)
            np.matmul(a, b, out=c)  # warm up
            flop = 2.0 * m * n * k
            reps = max(1, int(0.3e9 / flop * 20))  # about 0.1-0.3 s
            t0, p0 = time.perf_counter(), time.process_time()
            for _ in range(reps):
                np.matmul(a, b, out=c)
            wall, cpu = time.perf_counter() - t0, time.process_time() - p0
            print("numpy/%s/%s/%s/t=%s %.2f %.2f" % (label, tname, name, threads,
                                                     flop * reps / wall / 1e9,
                                                     flop * reps / max(cpu, 1e-9) / 1e9))
            sys.stdout.flush()


def torch_run():
    import numpy as np
    import torch

    threads = int(os.environ.get("TORCH_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    rng = np.random.default_rng(1)
    for dtype, tname in ((np.float64, "Dgemm"), (np.float32, "Sgemm")):
        for name, m, n, k in SHAPES:
            a = torch.from_numpy(rng.uniform(-1, 1, (m, k)).astype(dtype))
            b = torch.from_numpy(rng.uniform(-1, 1, (k, n)).astype(dtype))
            c = torch.empty((m, n), dtype=a.dtype)
            torch.matmul(a, b, out=c)  # warm up
            flop = 2.0 * m * n * k
            reps = max(1, int(0.3e9 / flop * 20))
            t0, p0 = time.perf_counter(), time.process_time()
            for _ in range(reps):
                torch.matmul(a, b, out=c)
            wall, cpu = time.perf_counter() - t0, time.process_time() - p0
            print("torch/torch/%s/%s/t=%d %.2f %.2f" % (tname, name, threads,
                                                       flop * reps / wall / 1e9,
                                                       flop * reps / max(cpu, 1e-9) / 1e9))
            sys.stdout.flush()


GO_LINE = re.compile(r"^Benchmark(Dgemm|Sgemm)/([^/]+)/(.+)/t=(\d+)-\d+\s.*?([\d.]+) GFLOP/cpu-s\s+([\d.]+) GFLOP/s")


def table(files):
    # results[(typ, shape, threads)][impl] = ([wall], [cpu])
    results = {}
    for path in files:
        for line in open(path):
            line = line.strip()
            m = GO_LINE.match(line)
            if m:
                typ, impl, shape, t, cpu, wall = m.groups()
                impl = "accel" if impl == "asm" else impl
            elif line.startswith("numpy/") or line.startswith("torch/"):
                key, wall, cpu = line.split()
                peer, label, typ, rest = key.split("/", 3)
                shape, t = rest.rsplit("/t=", 1)
                impl = "torch" if peer == "torch" else "openblas-" + label
            else:
                continue
            r = results.setdefault((typ, shape, int(t)), {}).setdefault(impl, ([], []))
            r[0].append(float(wall))
            r[1].append(float(cpu))
    impls = ["accel", "gonum", "openblas-default", "openblas-SkylakeX", "torch"]
    for which, idx in (("wall-clock GFLOP/s", 0), ("GFLOP per CPU-second", 1)):
        print("\n%s, median of runs (runs in parentheses)\n" % which)
        print("| routine | shape (m×k · k×n) | threads | accel | gonum | OpenBLAS default | OpenBLAS SkylakeX | torch | accel/default | accel/SkylakeX | accel/torch |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        order = {s[0]: i for i, s in enumerate(SHAPES)}
        for key in sorted(results, key=lambda k: (k[0], order.get(k[1], 99), k[2])):
            typ, shape, t = key
            row = results[key]
            med = {}
            cells = []
            for impl in impls:
                if impl in row:
                    vals = row[impl][idx]
                    med[impl] = statistics.median(vals)
                    cells.append("%.1f (%d)" % (med[impl], len(vals)))
                else:
                    cells.append("–")
            ratios = []
            for peer in impls[2:]:
                if "accel" in med and peer in med and med[peer] > 0:
                    ratios.append("%.2f" % (med["accel"] / med[peer]))
                else:
                    ratios.append("–")
            print("| %s | %s | %d | %s | %s |" % (typ, shape, t, " | ".join(cells), " | ".join(ratios)))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "numpy":
        numpy_run(sys.argv[2])
    elif len(sys.argv) >= 2 and sys.argv[1] == "torch":
        torch_run()
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2:])
    else:
        sys.exit(__doc__)
