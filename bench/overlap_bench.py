"""Gradient all-reduce overlap: step time with distributed.overlap on vs off.

    python bench/overlap_bench.py --clipscale build/bin/clipscale --data demo_data
        [--config configs/demo.yaml] [--ranks 2] [--steps 40] [--warmup 5]
        [--bucket-mb 1] [--repeats 2] [--keep DIR]

Runs `mpirun -np RANKS clipscale train` on the recipe with evaluation off, once
with `distributed.overlap: true` (buckets launched from the gradient hooks
while backward runs, and each hook polling the buckets in flight, since Open MPI
advances a nonblocking all-reduce only inside MPI calls) and once with
`false` (every bucket launched after backward), alternating which goes first
over --repeats. Small buckets (--bucket-mb, default 1 MB) give the demo's small
model several buckets to overlap; with the default 25 MB it has one.

Per run: the median step time after --warmup steps, from metrics.jsonl
(train/samples_per_second = batch / step time). Printed: each run's median, the
median over repeats per setting, and the ratio off/on (> 1: overlap is faster).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile


def median_step_seconds(out_dir, batch, warmup):
    rates = []
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if "train/samples_per_second" in record and record["step"] >= warmup:
                rates.append(record["train/samples_per_second"])
    if not rates:
        sys.exit(f"no step times in {out_dir}/metrics.jsonl")
    return statistics.median(batch / r for r in rates)


def run(a, overlap, out_dir):
    cmd = ["mpirun", "--allow-run-as-root", "-np", str(a.ranks), a.clipscale, "train",
           "--config", a.config,
           "--set", f"data.train={os.path.join(a.data, 'train')}", "--set", "data.val=",
           "--set", f"max_steps={a.steps}", "--set", "eval.every_steps=0",
           "--set", f"schedule.warmup_steps={min(10, a.steps // 2)}",
           "--set", f"distributed.bucket_mb={a.bucket_mb}",
           "--set", f"distributed.overlap={'true' if overlap else 'false'}",
           "--set", f"output={out_dir}", "--set", "log_every=10"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    batch = a.batch
    return median_step_seconds(out_dir, batch, a.warmup)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clipscale", required=True)
    p.add_argument("--data", default="demo_data", help="folder with train/ shards")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=64, help="the recipe's data.batch_size")
    p.add_argument("--bucket-mb", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--keep", help="keep the run folders here")
    a = p.parse_args()
    root = a.keep or tempfile.mkdtemp(prefix="overlap_bench_")
    times = {True: [], False: []}
    try:
        for k in range(a.repeats):
            for overlap in ([True, False] if k % 2 == 0 else [False, True]):
                out = os.path.join(root, f"overlap_{'on' if overlap else 'off'}_{k}")
                shutil.rmtree(out, ignore_errors=True)
                t = run(a, overlap, out)
                times[overlap].append(t)
                print(f"repeat {k} overlap {'on ' if overlap else 'off'}: median step {t * 1e3:.1f} ms",
                      flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"W={a.ranks}, buckets of {a.bucket_mb} MB: median step {on * 1e3:.1f} ms with overlap, "
          f"{off * 1e3:.1f} ms without: ratio off/on {off / on:.3f}")


if __name__ == "__main__":
    main()
