"""GPU benchmarks for scripts/gpu-check.sh, on one CUDA device in one run.

    python bench/gpu_bench.py --clipscale build-cuda/bin/clipscale \
        --loss-bench build-cuda/bench/gpu_loss_bench --out OUT [--steps 15] [--warmup 5]
        [--batches 1024,768,512,384,256] [--loss-sizes 32768,65536]

1. Peak: the best bf16 matmul rate of this device (8192^3, timed with CUDA
   events), the denominator of MFU.
2. FLOPs per sample of ViT-B/16 CLIP training at 224 px (forward + backward of
   both towers and the loss), counted by torch.utils.flop_counter on
   OpenCLIP's model: the same architecture clipscale trains.
3. OpenCLIP's training step (open_clip_train's train_one_epoch for amp_bf16:
   autocast, ClipLoss, backward, AdamW; inputs already on the device, so no
   data loading is in its number) at the largest batch of --batches that fits;
   samples/s over --steps steps after --warmup.
4. `clipscale train` of ViT-B-16, precision amp_bf16, on CUDA, at the same
   batch, on `clipscale data synth` shards at 256 px (its streaming loader
   decodes and crops them to 224 on the CPU while the GPU trains: its number
   includes data loading); samples/s from the step times in metrics.jsonl,
   the loader's wait reported beside it.
5. MFU of both = samples/s x FLOPs per sample / peak.
6. The contrastive loss at --loss-sizes (d = 512, fp32): OpenCLIP's ClipLoss
   here and clipscale's TiledClipLoss (gpu_loss_bench), time and peak device
   memory of forward + backward.

Writes OUT/gpu_bench.json and prints a summary. Exits 77 without a CUDA device.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch


def log(*args):
    print("gpu_bench:", *args, flush=True)


def peak_bf16_tflops(n=8192, iters=20):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    best = 0.0
    for _ in range(4):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            torch.mm(a, b)
        end.record()
        torch.cuda.synchronize()
        best = max(best, 2.0 * n**3 * iters / (start.elapsed_time(end) / 1e3) / 1e12)
    return best


def openclip_parts(model_name):
    import open_clip
    from open_clip.loss import ClipLoss

    model = open_clip.create_model(model_name).cuda()
    return open_clip, model, ClipLoss()


def flops_per_sample(model, loss_fn, batch=4):
    from torch.utils.flop_counter import FlopCounterMode

    images = torch.randn(batch, 3, 224, 224, device="cuda")
    texts = torch.randint(0, 49408, (batch, 77), device="cuda")
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            img, txt, scale = model(images, texts)
            loss = loss_fn(img, txt, scale)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def openclip_rate(model, loss_fn, batch, warmup, steps):
    """samples/s of open_clip_train's amp_bf16 step; None when the batch does not fit."""
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.2, betas=(0.9, 0.98),
                            eps=1e-6)
    images = torch.randn(batch, 3, 224, 224, device="cuda")
    texts = torch.randint(0, 49408, (batch, 77), device="cuda")
    times = []
    try:
        for i in range(warmup + steps):
            torch.cuda.synchronize()
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                img, txt, scale = model(images, texts)
                loss = loss_fn(img, txt, scale)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            loss.item()
            torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        del opt, images, texts
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
    return batch / statistics.median(times)


def clipscale_rate(binary, out, batch, warmup, steps):
    data = os.path.join(out, "synth")
    if not os.path.exists(os.path.join(data, "train")):
        subprocess.run([binary, "data", "synth", "--out", data, "--train",
                        str(batch * (warmup + steps)), "--val", "32", "--image-size", "256",
                        "--per-shard", "1000"], check=True, stdout=subprocess.DEVNULL)
    run = os.path.join(out, f"clipscale_b{batch}")
    recipe = os.path.join(out, f"recipe_b{batch}.yaml")
    with open(recipe, "w") as f:
        f.write(f"model: ViT-B-16\ndata:\n  train: {data}/train\n  batch_size: {batch}\n"
                f"precision: amp_bf16\ndevice: cuda\nepochs: 1\nmax_steps: {warmup + steps}\n"
                f"log_every: 1\noutput: {run}\n")
    r = subprocess.run([binary, "train", "--config", recipe], capture_output=True, text=True)
    with open(run + ".log", "w") as f:
        f.write(r.stdout + r.stderr)
    if r.returncode != 0:
        return None, (r.stdout + r.stderr)[-2000:]
    rates, waits = {}, {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "train/samples_per_second" in j:
                rates[j["step"]] = j["train/samples_per_second"]
            if "data/wait_s" in j:
                waits[j["step"]] = j["data/wait_s"]
    steady = [v for s, v in rates.items() if s >= warmup]
    wait = sum(v for s, v in waits.items() if s >= warmup)
    step_s = sum(batch / v for s, v in rates.items() if s >= warmup)
    return statistics.median(steady), {"wait_fraction": wait / step_s if step_s else None}


def openclip_loss(sizes, dim, repeats=3):
    from open_clip.loss import ClipLoss

    loss_fn, out = ClipLoss(), []
    torch.backends.cuda.matmul.allow_tf32 = False
    for n in sizes:
        row = {"n": n}
        try:
            x = torch.nn.functional.normalize(torch.randn(n, dim, device="cuda"), dim=1)
            y = torch.nn.functional.normalize(torch.randn(n, dim, device="cuda"), dim=1)
            x.requires_grad_(), y.requires_grad_()
            scale = torch.tensor(math.log(1 / 0.07), device="cuda", requires_grad=True)
            seconds, extra = [], 0
            for r in range(repeats + 1):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                start = time.perf_counter()
                loss_fn(x, y, scale.exp()).backward()
                torch.cuda.synchronize()
                if r > 0:  # the first is the warm-up
                    seconds.append(time.perf_counter() - start)
                    extra = max(extra, torch.cuda.max_memory_allocated() - before)
                x.grad = y.grad = scale.grad = None
            row.update(seconds=statistics.median(seconds), extra_bytes=extra)
        except torch.cuda.OutOfMemoryError as e:
            row["skipped"] = "out of device memory: " + str(e).split("\n")[0][:200]
        finally:
            x = y = None
            torch.cuda.empty_cache()
        out.append(row)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clipscale", required=True)
    p.add_argument("--loss-bench", required=True, help="build-cuda/bench/gpu_loss_bench")
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="ViT-B-16")
    p.add_argument("--batches", default="1024,768,512,384,256")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--loss-sizes", default="32768,65536")
    a = p.parse_args()
    if not torch.cuda.is_available():
        log("no CUDA device: nothing measured")
        return 77
    os.makedirs(a.out, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    result["peak_bf16_tflops"] = peak = peak_bf16_tflops()
    log(f"{result['device']}: bf16 matmul peak {peak:.0f} TFLOP/s (measured)")

    open_clip, model, loss_fn = openclip_parts(a.model)
    result["open_clip"] = open_clip.__version__
    result["flops_per_sample"] = fps = flops_per_sample(model, loss_fn)
    log(f"{a.model} training FLOPs per sample: {fps / 1e9:.1f} GFLOP (FlopCounterMode)")

    batch, oc_rate = None, None
    for b in [int(x) for x in a.batches.split(",")]:
        oc_rate = openclip_rate(model, loss_fn, b, a.warmup, a.steps)
        if oc_rate is not None:
            batch = b
            break
        log(f"OpenCLIP: batch {b} does not fit")
    del model
    torch.cuda.empty_cache()
    result["batch"] = batch
    cs_rate, cs_info = None, None
    while batch is not None:
        cs_rate, cs_info = clipscale_rate(a.clipscale, a.out, batch, a.warmup, a.steps)
        if cs_rate is not None:
            break
        log(f"clipscale at batch {batch} failed: ...{cs_info[-600:]}")
        batch //= 2
        if batch < 64:
            batch = None
            break
        _, model, loss_fn = openclip_parts(a.model)  # the same batch on both sides
        oc_rate = openclip_rate(model, loss_fn, batch, a.warmup, a.steps)
        del model
        torch.cuda.empty_cache()
    result["train"] = {
        "batch": batch,
        "openclip_samples_per_s": oc_rate,
        "clipscale_samples_per_s": cs_rate,
        "clipscale_loader_wait_fraction": cs_info.get("wait_fraction") if cs_rate else None,
        "openclip_mfu": oc_rate * fps / (peak * 1e12) if oc_rate else None,
        "clipscale_mfu": cs_rate * fps / (peak * 1e12) if cs_rate else None,
        "ratio_clipscale_to_openclip": cs_rate / oc_rate if cs_rate and oc_rate else None,
    }
    t = result["train"]
    log(f"train {a.model} bf16 batch {batch}: OpenCLIP {oc_rate or 0:.0f} samples/s "
        f"(MFU {100 * (t['openclip_mfu'] or 0):.1f} %), clipscale {cs_rate or 0:.0f} samples/s "
        f"(MFU {100 * (t['clipscale_mfu'] or 0):.1f} %), ratio {t['ratio_clipscale_to_openclip']}")

    sizes = [int(x) for x in a.loss_sizes.split(",")]
    loss = {"openclip": openclip_loss(sizes, 512)}
    r = subprocess.run([a.loss_bench, "--sizes", a.loss_sizes, "--dim", "512"],
                       capture_output=True, text=True)
    loss["clipscale"] = json.loads(r.stdout)["results"] if r.returncode == 0 else r.stderr[-1000:]
    result["loss"] = loss
    for oc in loss["openclip"]:
        cs = next((c for c in loss["clipscale"] if isinstance(c, dict) and c["n"] == oc["n"]), None)
        if cs is None:
            continue
        if "skipped" in oc:
            log(f"loss N={oc['n']}: clipscale {cs['seconds']:.3f} s, "
                f"{cs['extra_bytes'] / 2**20:.0f} MiB; OpenCLIP {oc['skipped']}")
        else:
            log(f"loss N={oc['n']}: clipscale {cs['seconds']:.3f} s, "
                f"{cs['extra_bytes'] / 2**20:.0f} MiB; OpenCLIP {oc['seconds']:.3f} s, "
                f"{oc['extra_bytes'] / 2**20:.0f} MiB; time ratio {cs['seconds'] / oc['seconds']:.2f},"
                f" memory ratio {cs['extra_bytes'] / oc['extra_bytes']:.4f}")
    with open(os.path.join(a.out, "gpu_bench.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
