"""OpenCLIP's ClipLoss and SigLipLoss (one process) with autograd, in fp64.

Usage: contrastive_loss_reference.py OUT_DIR N D SCALE
Writes x, y (row-normalised, with a duplicated pair), t, b and, for each loss
name in (clip, siglip): <name>_loss, <name>_gx, <name>_gy, <name>_gt[, siglip_gb].
"""
import math
import os
import sys

import numpy as np
import torch
from open_clip.loss import ClipLoss, SigLipLoss


def main():
    out, n, d, scale = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x[3], y[3] = x[1], y[1]  # a duplicated pair
    x = torch.nn.functional.normalize(x, dim=-1)
    y = torch.nn.functional.normalize(y, dim=-1)
    save = lambda name, v: np.save(os.path.join(out, name + ".npy"), v.detach().numpy())
    t = torch.tensor(math.log(scale), dtype=torch.float64)
    b = torch.tensor(-10.0, dtype=torch.float64)
    for name, value in (("x", x), ("y", y), ("t", t), ("b", b)):
        save(name, value)
    for name in ("clip", "siglip"):
        xs, ys, ts, bs = (v.clone().requires_grad_(True) for v in (x, y, t, b))
        if name == "clip":
            loss = ClipLoss()(xs, ys, ts.exp())
        else:
            loss = SigLipLoss()(xs, ys, ts.exp(), bs)
        loss.backward()
        save(name + "_loss", loss)
        save(name + "_gx", xs.grad)
        save(name + "_gy", ys.grad)
        save(name + "_gt", ts.grad)
        if name == "siglip":
            save(name + "_gb", bs.grad)
    print("ok")


if __name__ == "__main__":
    main()
