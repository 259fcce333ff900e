"""OpenCLIP's side of bench/train_bench.py: open_clip_train's inner loop, in-process.

    openclip_train_loop.py --data DIR --model-yaml configs/models/tiny.yaml
        --steps N --batch B --threads T [--warmup W] [--lr ..] [--wd ..] ...

What one step does is what open_clip_train.train.train_one_epoch does with
precision fp32, accum_freq 1, one process, on CPU, and what clipscale's
Trainer::Step does (train/trainer.cc, train/batch.cc), so the two sides time the
same work:
  data      images decoded once, up front (PIL, RGB), like clipscale's
            LoadExamples; untimed. Each step, in this thread (no DataLoader
            workers: clipscale's MakeBatch transforms in the training thread),
            open_clip.image_transform(S, is_train=True) per image:
            RandomResizedCrop(S, scale=(0.9, 1.0), bicubic, antialias) +
            ToTensor + Normalize(OpenAI mean/std), then torch.stack (collate).
  text      open_clip.tokenize of the batch's captions (context from the model).
  schedule  open_clip_train.scheduler.cosine_lr(step).
  model     open_clip.model.CLIP(**cfg, output_dict=True) in train mode, fp32.
  loss      open_clip.loss.ClipLoss(cache_labels=True), as open_clip.create_loss.
  optimizer zero_grad, backward, clip_grad_norm_, torch.optim.AdamW with
            open_clip_train.main's two parameter groups (no decay on ndim < 2,
            "bn", "ln", "bias", "logit_scale"), step, logit_scale.clamp_(0, ln 100).
  sync      loss.item() at the end of each step (clipscale reads the loss too).

Batches: a fresh random permutation of the samples per epoch, the last partial
batch dropped (clipscale's order). Prints one JSON object: the per-step seconds,
samples/s over all steps (the loop's wall time, as clipscale's printed number)
and after W warm-up steps.
"""
import argparse
import io
import json
import math
import os
import sys
import tarfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "py"))
import open_clip  # noqa: E402
import torch  # noqa: E402
from clip_common import build_model, yaml_to_openclip  # noqa: E402
from open_clip_train.scheduler import cosine_lr  # noqa: E402
from PIL import Image  # noqa: E402

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # data/examples.cc's list


def read_shard(path):
    """WebDataset samples of one tar, in order: {extension: bytes} per key."""
    samples, current_key, fields = [], None, {}
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            directory, base = os.path.split(member.name)
            if "." not in base:
                continue
            stem, extension = base.split(".", 1)
            key = os.path.join(directory, stem)
            if key != current_key:
                if fields:
                    samples.append(fields)
                current_key, fields = key, {}
            fields[extension.lower()] = tar.extractfile(member).read()
    if fields:
        samples.append(fields)
    return samples


def load_examples(folder):
    """(images, captions): every usable sample of the folder's shards, decoded."""
    images, captions = [], []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".tar"):
            continue
        for fields in read_shard(os.path.join(folder, name)):
            data = next((fields[e] for e in IMAGE_EXTENSIONS if e in fields), None)
            if data is None or "txt" not in fields:
                continue
            caption = fields["txt"].decode("utf-8", errors="strict")
            if not caption.strip():
                continue
            images.append(Image.open(io.BytesIO(data)).convert("RGB"))
            captions.append(caption)
    return images, captions


def make_optimizer(model, a):
    # open_clip_train/main.py's parameter groups and AdamW arguments.
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    named = list(model.named_parameters())
    gain_or_bias = [p for n, p in named if exclude(n, p) and p.requires_grad]
    rest = [p for n, p in named if not exclude(n, p) and p.requires_grad]
    return torch.optim.AdamW(
        [{"params": gain_or_bias, "weight_decay": 0.0}, {"params": rest, "weight_decay": a.wd}],
        lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)


def batches(n, batch, steps, generator):
    """Index lists for `steps` steps: per-epoch permutations, drop_last."""
    produced = 0
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        for b in range(n // batch):
            if produced == steps:
                return
            yield order[b * batch:(b + 1) * batch]
            produced += 1


def webdataset_batches(folder, batch, steps, preprocess, context_length, workers, seed):
    """open_clip_train/data.py's get_wds_dataset from the shards, as users train:
    shards shuffled per epoch, samples through a 1000-sample shuffle buffer,
    decode("pilrgb"), the train transform and the tokenizer in DataLoader
    workers (`workers` processes; 0: in this thread), batched, drop_last."""
    import webdataset as wds
    urls = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".tar"))
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls), wds.shuffle(100, initial=100, rng=None),
        wds.split_by_worker, wds.tarfile_to_samples(), wds.shuffle(1000, initial=1000),
        wds.decode("pilrgb"), wds.rename(image="jpg;png;jpeg;webp", text="txt"),
        wds.map_dict(image=preprocess,
                     text=lambda text: open_clip.tokenize([text], context_length)[0]),
        wds.to_tuple("image", "text"), wds.batched(batch, partial=False))
    loader = wds.WebLoader(pipeline, batch_size=None, shuffle=False, num_workers=workers,
                           persistent_workers=workers > 0)
    produced = 0
    while produced < steps:
        for images, tokens in loader:
            if produced == steps:
                return
            yield images, tokens
            produced += 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="folder of .tar shards")
    p.add_argument("--model-yaml", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps for the steady rate")
    p.add_argument("--augment", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-warmup", type=int, default=40)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.98)
    p.add_argument("--eps", type=float, default=1e-6)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loader", choices=["memory", "webdataset"], default="memory",
                   help="memory: decode up front, transform per step in this thread; "
                        "webdataset: open_clip_train's streaming loader from the shards")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (webdataset)")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    load_start = time.perf_counter()
    images, captions = load_examples(a.data) if a.loader == "memory" else ([], [])
    load_seconds = time.perf_counter() - load_start
    if a.loader == "memory" and len(images) < a.batch:
        raise SystemExit(f"{len(images)} usable samples in {a.data}, fewer than a batch")

    cfg = yaml_to_openclip(a.model_yaml)
    model = build_model(dict(cfg, output_dict=True))
    model.train()
    image_size = cfg["vision_cfg"]["image_size"]
    context_length = cfg["text_cfg"]["context_length"]
    preprocess = open_clip.image_transform(image_size, is_train=bool(a.augment))
    loss_fn = open_clip.loss.ClipLoss(cache_labels=True)
    optimizer = make_optimizer(model, a)
    scheduler = cosine_lr(optimizer, a.lr, a.lr_warmup, a.steps)
    generator = torch.Generator().manual_seed(a.seed)

    if a.loader == "memory":
        def source():
            for indices in batches(len(images), a.batch, a.steps, generator):
                yield (torch.stack([preprocess(images[i]) for i in indices]),
                       open_clip.tokenize([captions[i] for i in indices], context_length))
    else:
        def source():
            return webdataset_batches(a.data, a.batch, a.steps, preprocess, context_length,
                                      a.workers, a.seed)
    step_seconds, losses = [], []
    loop_start = time.perf_counter()
    stream = source()
    for step in range(a.steps):
        step_start = time.perf_counter()
        scheduler(step)
        batch_images, batch_tokens = next(stream)
        optimizer.zero_grad()
        out = model(batch_images, batch_tokens)
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip, norm_type=2.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        step_seconds.append(time.perf_counter() - step_start)
    loop_seconds = time.perf_counter() - loop_start

    steps = len(step_seconds)
    timed = step_seconds[a.warmup:]
    print(json.dumps({
        "samples": len(images) if a.loader == "memory" else None,
        "load_seconds": load_seconds,
        "parameters": sum(t.numel() for t in model.parameters()),
        "steps": steps,
        "step_seconds": step_seconds,
        "samples_per_second": steps * a.batch / loop_seconds,
        "steady_samples_per_second": len(timed) * a.batch / sum(timed) if timed else None,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }))


if __name__ == "__main__":
    main()
