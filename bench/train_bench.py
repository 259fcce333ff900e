"""Training throughput: `clipscale train` against OpenCLIP's training loop.

    python bench/train_bench.py --clipscale build/bin/clipscale --data demo_data
        [--config configs/demo.yaml] [--model tiny] [--steps 60] [--batch 64] [--threads 2]
        [--warmup 3] [--repeats 1] [--keep DIR]
        [--openclip-loader memory|webdataset] [--workers 1]

Run it with the project venv's python (open_clip, open_clip_train, torch). Both
sides train the recipe's model (configs/demo.yaml: tiny-rn; --model to change it) on the same samples,
with the same batch, step count, intra-op threads and fp32, on this CPU, in this
run; each in its own process, one after the other (alternating which goes first
when --repeats > 1), and the medians are compared.

Same samples, same step count: the first steps*batch usable samples of
<data>/train's shards are copied, unchanged, into one temporary shard that both
sides read (more epochs over all samples when there are too few). clipscale
runs epochs * (samples / batch) steps, so this makes its run exactly --steps
steps long, and OpenCLIP runs the same number.

What each side's step includes (everything else, decoding the shards, building
the model, saving weights, is outside the timings):
  clipscale (train/trainer.cc Trainer::Step): batches from its streaming
    loader (data/stream_loader.h: decode threads read the shard, decode the
    JPEG, RandomResizedCrop(64, scale 0.9-1, bicubic) + normalise and tokenise,
    prefetched; the step waits only for what is not ready); LR schedule;
    forward; the InfoNCE loss (the recipe's `loss: clip`; with one rank and no
    micro-batches, train/data_parallel.cc's ComputeGradients → TiledClipLoss);
    backward; clip_grad_norm 1.0; AdamW; logit_scale clamp; loss.item().
    Between steps it also logs four scalars to TensorBoard/metrics.jsonl
    (flushed every log_every steps): part of its loop, so part of its number.
  OpenCLIP (bench/py/openclip_train_loop.py): open_clip_train's
    train_one_epoch step for fp32 on one CPU process: open_clip.image_transform
    (is_train=True) per image + torch.stack, in the training thread (no
    DataLoader workers); open_clip.tokenize; cosine_lr; CLIP(output_dict=True)
    forward; open_clip ClipLoss; backward; clip_grad_norm_ 1.0; torch AdamW with
    open_clip_train.main's parameter groups; logit_scale clamp; loss.item().

Three rates per side:
  loop    steps * batch / wall time of the whole training loop, first step
          included: what `clipscale train` prints ("trained N steps at X
          samples/s"), and the same clock around OpenCLIP's loop. The headline.
  steady  after --warmup steps, from per-step times: clipscale's come from its
          metrics.jsonl (train/samples_per_second = batch / step time, the
          between-step logging not included), OpenCLIP's from the loop.
  median  batch / the median step time after --warmup steps: the least moved
          by other processes taking the CPU for a while (shared machines).
"""
import argparse
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOP = os.path.join(REPO, "bench", "py", "openclip_train_loop.py")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # data/examples.cc's list
TRAINED = re.compile(r"trained (\d+) steps at ([0-9.]+) samples/s")
PLACED = re.compile(r"(\d+) rank\(s\), backend (\S+), device (\S+)")


def shard_samples(folder):
    """Yields each sample of the folder's shards as [(TarInfo, bytes)], in order."""
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".tar"):
            continue
        with tarfile.open(os.path.join(folder, name)) as tar:
            key, members = None, []
            for member in tar:
                if not member.isfile() or "." not in os.path.basename(member.name):
                    continue
                directory, base = os.path.split(member.name)
                member_key = os.path.join(directory, base.split(".", 1)[0])
                if member_key != key and members:
                    yield members
                    members = []
                key = member_key
                members.append((member, tar.extractfile(member).read()))
            if members:
                yield members


def usable(members):
    """What clipscale's LoadExamples keeps (decoding aside): an image and a caption."""
    fields = {os.path.basename(m.name).split(".", 1)[1].lower(): data for m, data in members}
    has_image = any(e in fields for e in IMAGE_EXTENSIONS)
    return has_image and fields.get("txt", b"").strip() != b""


def write_subset(source, out_dir, steps, batch):
    """Writes out_dir/00000.tar so that clipscale runs exactly `steps` steps.

    Returns (samples written, epochs); steps rounds up to epochs * samples / batch.
    """
    samples = [s for s in shard_samples(source) if usable(s)]
    if len(samples) < batch:
        raise SystemExit(f"{len(samples)} usable samples in {source}, fewer than a batch")
    epochs = math.ceil(steps * batch / len(samples))
    per_epoch = math.ceil(steps / epochs)
    chosen = samples[:per_epoch * batch]
    os.makedirs(out_dir)
    with tarfile.open(os.path.join(out_dir, "00000.tar"), "w") as tar:
        for members in chosen:
            for member, data in members:
                tar.addfile(member, io.BytesIO(data))
    return len(chosen), epochs


def model_yaml(name):
    path = name if os.path.isabs(name) else os.path.join(REPO, name)
    if os.path.exists(path):
        return path
    return os.path.join(REPO, "configs", "models", f"{name}.yaml")


def step_rates(step_seconds, batch, warmup):
    """(steady, median) samples/s from the step times after `warmup` steps."""
    timed = step_seconds[warmup:]
    if not timed:
        return float("nan"), float("nan")
    return len(timed) * batch / sum(timed), batch / statistics.median(timed)


def run_clipscale(a, s, data_dir, out_dir, env):
    cmd = [a.clipscale, "train", "--config", a.config,
           "--set", f"model={s['model_yaml']}",
           "--set", f"data.train={data_dir}",
           "--set", "data.val=''",            # no held-out set: no evaluation at all
           "--set", "eval.every_steps=0",
           "--set", f"data.batch_size={a.batch}",
           "--set", f"epochs={s['epochs']}",
           "--set", f"threads={a.threads}",
           "--set", f"schedule.warmup_steps={s['lr_warmup']}",
           "--set", f"seed={s['seed']}",
           "--set", f"output={out_dir}"]
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    m = TRAINED.search(p.stdout)
    if p.returncode != 0 or not m:
        sys.exit(f"clipscale train failed ({p.returncode}):\n{' '.join(cmd)}\n"
                 f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    placed = PLACED.search(p.stdout)  # printed by builds with distributed training
    if placed and (placed.group(1) != "1" or placed.group(3) != "cpu"):
        sys.exit(f"clipscale trained on {placed.group(0)}; this benchmark compares one CPU process")
    step_seconds = {}
    with open(os.path.join(out_dir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "train/samples_per_second" in row:
                step_seconds[row["step"]] = a.batch / row["train/samples_per_second"]
    seconds = [step_seconds[k] for k in sorted(step_seconds)]
    steady, median = step_rates(seconds, a.batch, a.warmup)
    return {"steps": int(m.group(1)), "loop": float(m.group(2)), "steady": steady,
            "median": median, "wall": wall, "step_seconds": seconds, "command": cmd}


def run_openclip(a, s, data_dir, env):
    cmd = [sys.executable, LOOP, "--data", data_dir, "--model-yaml", s["model_yaml"],
           "--steps", str(s["steps"]), "--batch", str(a.batch), "--threads", str(a.threads),
           "--warmup", str(a.warmup), "--augment", str(int(s["augment"])),
           "--lr", str(s["lr"]), "--lr-warmup", str(s["lr_warmup"]), "--wd", str(s["wd"]),
           "--beta1", str(s["beta1"]), "--beta2", str(s["beta2"]), "--eps", str(s["eps"]),
           "--grad-clip", str(s["grad_clip"]), "--seed", str(s["seed"]),
           "--loader", a.openclip_loader, "--workers", str(a.workers)]
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"OpenCLIP loop failed ({p.returncode}):\n{' '.join(cmd)}\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    steady, median = step_rates(r["step_seconds"], a.batch, a.warmup)
    return {"steps": r["steps"], "loop": r["samples_per_second"], "steady": steady,
            "median": median, "wall": wall, "step_seconds": r["step_seconds"], "command": cmd}


def settings_from(a, recipe, total_steps, epochs):
    opt, sched = recipe.get("optimizer", {}), recipe.get("schedule", {})
    # clipscale's defaults (train/optimizer.h, train/schedule.h) where the recipe is silent.
    return {"model_yaml": model_yaml(a.model or recipe.get("model", "tiny")),
            "steps": total_steps, "epochs": epochs,
            "augment": recipe.get("data", {}).get("augment", True),
            "lr": sched.get("lr", 5e-4),
            # The schedule must warm up in fewer steps than the run has.
            "lr_warmup": min(sched.get("warmup_steps", 100), total_steps // 2),
            "wd": opt.get("weight_decay", 0.2), "beta1": opt.get("beta1", 0.9),
            "beta2": opt.get("beta2", 0.98), "eps": opt.get("eps", 1e-6),
            "grad_clip": opt.get("grad_clip_norm", 0.0), "seed": recipe.get("seed", 0)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clipscale", required=True, help="the clipscale binary")
    p.add_argument("--data", default="demo_data", help="folder with train/ shards (or shards)")
    p.add_argument("--config", default="configs/demo.yaml", help="recipe, relative to the repo")
    p.add_argument("--model", help="model name or YAML for both sides (default: the recipe's)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the steady rate")
    p.add_argument("--repeats", type=int, default=1, help="runs per side; medians compared")
    p.add_argument("--keep", help="keep the shard, outputs and per-run step times (JSON) here")
    p.add_argument("--openclip-loader", choices=["memory", "webdataset"], default="memory",
                   help="OpenCLIP's data: decoded up front (the model loops compared), or "
                        "streamed from the shards by its webdataset pipeline (end to end)")
    p.add_argument("--workers", type=int, default=1,
                   help="OpenCLIP's DataLoader workers with --openclip-loader webdataset")
    a = p.parse_args()
    a.clipscale = os.path.abspath(a.clipscale)
    source = os.path.join(a.data, "train") if os.path.isdir(os.path.join(a.data, "train")) \
        else a.data
    with open(os.path.join(REPO, a.config), encoding="utf-8") as f:
        recipe = yaml.safe_load(f)

    work = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="train_bench_")
    os.makedirs(work, exist_ok=True)
    try:
        data_dir = os.path.join(work, "data")
        samples, epochs = write_subset(source, data_dir, a.steps, a.batch)
        total_steps = epochs * (samples // a.batch)
        s = settings_from(a, recipe, total_steps, epochs)
        # Both processes: the same thread count for torch's intra-op pool (and OpenMP).
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
        print(f"settings: model {os.path.relpath(s['model_yaml'], REPO)}, {samples} samples "
              f"from {source} x {epochs} epoch(s) = {total_steps} steps of batch {a.batch}, "
              f"{a.threads} threads, fp32, augment {s['augment']}, lr {s['lr']} "
              f"(warmup {s['lr_warmup']}), wd {s['wd']}, clip {s['grad_clip']}, "
              f"steady rate after {a.warmup} warm-up steps, {a.repeats} repeat(s)", flush=True)
        runs = {"clipscale": [], "openclip": []}
        for r in range(a.repeats):
            order = ["clipscale", "openclip"] if r % 2 == 0 else ["openclip", "clipscale"]
            for side in order:
                if side == "clipscale":
                    res = run_clipscale(a, s, data_dir, os.path.join(work, f"run{r}"), env)
                else:
                    res = run_openclip(a, s, data_dir, env)
                if res["steps"] != total_steps:
                    sys.exit(f"{side} ran {res['steps']} steps, expected {total_steps}")
                runs[side].append(res)
                with open(os.path.join(work, f"{side}{r}.json"), "w", encoding="utf-8") as f:
                    json.dump(res, f, indent=1)
                print(f"  run {r} {side:9s}: loop {res['loop']:6.1f}, steady {res['steady']:6.1f}, "
                      f"median step {res['median']:6.1f} samples/s ({res['wall']:.0f} s in all)",
                      flush=True)
        print("commands:\n  " + " ".join(runs["clipscale"][0]["command"]) +
              "\n  " + " ".join(runs["openclip"][0]["command"]))
        kinds = ("loop", "steady", "median")
        med = {side: {k: statistics.median(x[k] for x in v) for k in kinds}
               for side, v in runs.items()}
        ratio = {k: med["clipscale"][k] / med["openclip"][k] for k in kinds}
        print(f"samples/s  {'loop':>8s} {'steady':>8s} {'median':>8s}")
        for side in ("clipscale", "openclip"):
            print(f"{side:10s} " + " ".join(f"{med[side][k]:8.1f}" for k in kinds))
        print(f"{'ratio':10s} " + " ".join(f"{ratio[k]:7.2f}x" for k in kinds) +
              "   (clipscale / OpenCLIP)")
        target = "1.2x" if a.openclip_loader == "memory" else "1.5x, end to end from shards"
        print(f"clipscale/OpenCLIP training throughput ({a.openclip_loader} OpenCLIP data): "
              f"{ratio['loop']:.2f}x (target >= {target})")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
