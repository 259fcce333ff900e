"""torch.amp.GradScaler's trajectory on a fixed sequence of gradients with
injected infs and NaNs, as JSON: per step the unscaled gradient, the scale and
growth tracker after update(), and the parameter after the (maybe skipped)
SGD step.

Usage: grad_scaler_reference.py INIT_SCALE GROWTH BACKOFF INTERVAL STEPS
"""
import json
import math
import sys

import torch

init, growth, backoff = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
interval, steps = int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
p = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6))
opt = torch.optim.SGD([p], lr=0.1, foreach=False)
scaler = torch.amp.GradScaler("cpu", init_scale=init, growth_factor=growth,
                              backoff_factor=backoff, growth_interval=interval)
# The same rule as the C++ test: which steps get which non-finite value where.
bad = {4: math.inf, 5: math.nan, 9: -math.inf, 10: math.inf}
out = []
for step in range(steps):
    opt.zero_grad()
    w = torch.arange(6, dtype=torch.float32) * 0.37 - step * 0.11
    loss = (p * p * w).sum()
    scaler.scale(loss).backward()
    if step in bad:
        with torch.no_grad():
            p.grad[step % 6] = bad[step]
    scaler.unscale_(opt)
    grad = [repr(float(v)) for v in p.grad]  # repr: inf and nan survive JSON
    scaler.step(opt)
    scaler.update()
    out.append({"grad": grad, "scale": scaler.get_scale(),
                "tracker": int(scaler._growth_tracker.item()),
                "param": [float(v) for v in p.detach()]})
print(json.dumps(out))
