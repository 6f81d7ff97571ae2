#!/usr/bin/python3
"""Peers for accel's SVD benchmarks, and the table of ratios.

    svd_peer.py bench LABEL      time scipy (gesdd, gesvd, values only) and
                                 torch.svd_lowrank on the matrices of
                                 accel/svd_bench_test.go; print Go-benchmark
                                 lines tagged with LABEL (e.g. the OpenBLAS
                                 core type)
    svd_peer.py table GO.txt PEER.txt...
                                 medians per benchmark and ratios to accel

Each bench line is "BenchmarkX/<impl>/<case> 1 <wall ns/op> ns/op <cpu ns/op>
cpu-ns/op [<relerr> relerr]", the format `go test -bench` prints for
accel/svd_bench_test.go (which reports log10relerr instead: its fixed-point
output would print 1e-14 as 0), so the table reads both alike. The matrices:
Gaussian (numpy's generator; accel uses Go's, statistically the same) and
the Cauchy-like kernel matrix 1/(1 + 100·(i/m − j/n)²), identical in both.
"""
import os
import re
import statistics
import sys
import time


def timed(f, reps):
    """Median wall and CPU seconds of f() over reps calls after a warm-up."""
    f()
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        f()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def line(name, wall, cpu, extra=""):
    print(f"{name} 1 {wall*1e9:.0f} ns/op {cpu*1e9:.0f} cpu-ns/op{extra}", flush=True)


def kernel_matrix(np, m, n):
    i = np.arange(m, dtype=float)[:, None]
    j = np.arange(n, dtype=float)[None, :]
    x = i / m - j / n
    return 1 / (1 + 100 * x * x)


def bench(label):
    import numpy as np
    import scipy.linalg as sl
    rng = np.random.default_rng(7)
    sizes = [(256, 256), (512, 512), (1024, 1024), (2048, 512)]
    for m, n in sizes:
        a = rng.standard_normal((m, n))
        reps = 3 if m * n >= 1 << 20 else 5
        case = f"n={m}x{n}"
        w, c = timed(lambda: sl.svd(a, full_matrices=False, lapack_driver="gesdd"), reps)
        line(f"BenchmarkThinSVD/scipy-gesdd-{label}/{case}", w, c)
        w, c = timed(lambda: sl.svd(a, full_matrices=False, lapack_driver="gesvd"), reps)
        line(f"BenchmarkThinSVD/scipy-gesvd-{label}/{case}", w, c)
        w, c = timed(lambda: sl.svd(a, compute_uv=False, lapack_driver="gesdd"), reps)
        line(f"BenchmarkSingularValues/scipy-{label}/{case}", w, c)
    try:
        import torch
    except ImportError:
        print("torch not found: no svd_lowrank peer", file=sys.stderr)
        return
    torch.set_num_threads(os.cpu_count() or 1)
    for kind, m, n, k in [("gauss", 4096, 1024, 16), ("kernel", 4096, 1024, 16),
                          ("gauss", 1024, 1024, 16), ("gauss", 4096, 1024, 64)]:
        a = rng.standard_normal((m, n)) if kind == "gauss" else kernel_matrix(np, m, n)
        exact = sl.svd(a, compute_uv=False)
        t = torch.from_numpy(a)
        torch.manual_seed(0)
        got = {}

        def run():
            got["s"] = torch.svd_lowrank(t, q=k, niter=2)[1].numpy()

        w, c = timed(run, 5)
        rel = float(np.max(np.abs(got["s"][:k] - exact[:k]) / exact[:k]))
        line(f"BenchmarkTruncatedSVD/torch-lowrank-{label}/{kind}/n={m}x{n}/k={k}", w, c, f" {rel:.4g} relerr")


LINE = re.compile(r"^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(\d+(?:\.\d+)?) ns/op(.*)$")


def parse(paths):
    runs = {}
    for p in paths:
        with open(p) as f:
            for ln in f:
                m = LINE.match(ln.strip())
                if not m:
                    continue
                name, wall, rest = m.group(1), float(m.group(2)), m.group(3)
                cpu = re.search(r"(\d+(?:\.\d+)?) cpu-ns/op", rest)
                rel = re.search(r"(\S+) relerr", rest)
                lrel = re.search(r"(\S+) log10relerr", rest)
                r = runs.setdefault(name, {"wall": [], "cpu": [], "rel": []})
                r["wall"].append(wall / 1e9)
                if cpu:
                    r["cpu"].append(float(cpu.group(1)) / 1e9)
                if rel:
                    r["rel"].append(float(rel.group(1)))
                elif lrel:
                    r["rel"].append(10 ** float(lrel.group(1)))
    return runs


def table(paths):
    runs = parse(paths)
    groups = {}
    for name in runs:
        bench, impl, case = name.split("/", 2)
        groups.setdefault((bench, case), {})[impl] = runs[name]
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    for bench in ("BenchmarkThinSVD", "BenchmarkSingularValues", "BenchmarkTruncatedSVD"):
        keys = sorted((k for k in groups if k[0] == bench), key=lambda k: k[1])
        if not keys:
            continue
        print(f"\n### {bench[len('Benchmark'):]}  (median of {max(len(r['wall']) for k in keys for r in groups[k].values())} runs)\n")
        print("| case | implementation | wall s | CPU s | relerr | accel ÷ it (wall) | accel ÷ it (CPU) |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for k in keys:
            impls = groups[k]
            base = impls.get("accel")
            for impl in sorted(impls, key=lambda s: (s != "accel", s)):
                r = impls[impl]
                w, c = med(r["wall"]), med(r["cpu"])
                rel = f"{med(r['rel']):.2g}" if r["rel"] else ""
                rw = rc = ""
                if base is not None:
                    rw = f"{med(base['wall']) / w:.2f}"
                    if r["cpu"] and base["cpu"]:
                        rc = f"{med(base['cpu']) / c:.2f}"
                print(f"| {k[1]} | {impl} | {w:.4f} | {c:.4f} | {rel} | {rw} | {rc} |")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "bench":
        bench(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
