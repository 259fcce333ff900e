"""OpenCLIP's side of bench/loss_bench: ClipLoss (and SigLipLoss) forward+backward.

    python loss_bench.py --sizes 8192,16384 --dim 512 --threads 2 [--repeats 1] [--siglip]

Prints one JSON object on stdout: for every size and loss, the median seconds of
forward+backward and the extra peak memory, measured as loss_bench.cc does:
VmHWM reset through /proc/self/clear_refs, extra = VmHWM after - VmRSS before
(the unit-norm fp32 inputs already exist). A size whose estimated need exceeds
MemAvailable is skipped with the reason instead of risking the OOM killer.
"""
import argparse
import ctypes
import json
import math
import sys
import threading
import time

import open_clip
import torch
from open_clip.loss import ClipLoss, SigLipLoss

# Until a size has been measured: fp32 bytes per logit of a full-matrix loss
# (OpenCLIP's ClipLoss keeps both logit matrices, their log-softmaxes and grads).
PRIOR_BYTES_PER_LOGIT = 48
MEMORY_HEADROOM = 0.75  # share of MemAvailable; the machine is shared

_libc = ctypes.CDLL("libc.so.6")


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field + " not in /proc/self/status")


def mem_available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Fallback when clear_refs is not writable: max VmRSS polled every ms."""

    def __init__(self):
        self.peak_kib, self._stop = status_kib("VmRSS"), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.001):
            self.peak_kib = max(self.peak_kib, status_kib("VmRSS"))

    def stop(self):
        self._stop.set()
        self._thread.join()
        return max(self.peak_kib, status_kib("VmRSS"))


def measure(run, exact_peak):
    """Seconds and extra peak bytes of run(), after returning freed memory to the OS."""
    _libc.malloc_trim(0)
    sampler = None if exact_peak and reset_peak() else RssSampler()
    before = status_kib("VmRSS")
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM") if sampler is None else sampler.stop()
    return seconds, (peak - before) * 1024


def make_inputs(n, dim):
    gen = torch.Generator().manual_seed(1)
    norm = lambda t: torch.nn.functional.normalize(t, dim=1).requires_grad_()
    image = norm(torch.randn(n, dim, generator=gen))
    text = norm(torch.randn(n, dim, generator=gen))
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    return image, text, log_scale, bias


def losses(siglip):
    clip, sig = ClipLoss(), SigLipLoss()
    out = {"openclip ClipLoss": lambda x, y, t, b: clip(x, y, t.exp())}
    if siglip:
        out["openclip SigLipLoss"] = lambda x, y, t, b: sig(x, y, t.exp(), b)
    return out


def bench_one(fn, inputs, repeats, exact_peak):
    def run():
        fn(*inputs).backward()

    times, extras = [], []
    for _ in range(repeats):
        seconds, extra = measure(run, exact_peak)
        times.append(seconds)
        extras.append(extra)
        for t in inputs:
            t.grad = None
    return sorted(times)[len(times) // 2], max(extras)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--siglip", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exact_peak = reset_peak()
    fns = losses(args.siglip)
    small = make_inputs(256, args.dim)  # warm-up: thread pool, lazy init
    for fn in fns.values():
        fn(*small).backward()
    del small
    bytes_per_logit = {name: PRIOR_BYTES_PER_LOGIT for name in fns}
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        inputs = make_inputs(n, args.dim)
        for name, fn in fns.items():
            need, avail = bytes_per_logit[name] * n * n, mem_available_bytes()
            row = {"n": n, "variant": name}
            if need > MEMORY_HEADROOM * avail:
                row["skipped"] = ("needs ~%.1f GiB (%.1f B per logit), more than %.0f%% of "
                                  "MemAvailable %.1f GiB" % (need / 2**30, bytes_per_logit[name],
                                                             100 * MEMORY_HEADROOM, avail / 2**30))
            else:
                row["seconds"], row["extra_bytes"] = bench_one(fn, inputs, args.repeats,
                                                               exact_peak)
                bytes_per_logit[name] = row["extra_bytes"] / (n * n)
            print("loss_bench.py: %s" % json.dumps(row), file=sys.stderr)
            results.append(row)
        del inputs
    print(json.dumps({"torch": torch.__version__, "open_clip": open_clip.__version__,
                      "threads": torch.get_num_threads(), "exact_peak": exact_peak,
                      "results": results}))


if __name__ == "__main__":
    main()
