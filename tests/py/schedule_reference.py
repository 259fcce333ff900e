"""Learning rates from OpenCLIP's own scheduler functions, as JSON lines.

Usage: schedule_reference.py KIND BASE_LR WARMUP STEPS [COOLDOWN POWER END_LR]
"""
import json
import sys

from open_clip_train import scheduler


class _Opt:
    param_groups = [{"lr": 0.0}]


kind, base_lr, warmup, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
opt = _Opt()
if kind == "cosine":
    fn = scheduler.cosine_lr(opt, base_lr, warmup, steps)
elif kind == "const":
    fn = scheduler.const_lr(opt, base_lr, warmup, steps)
else:
    cooldown, power, end = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
    fn = scheduler.const_lr_cooldown(opt, base_lr, warmup, steps, cooldown, power, end)
print(json.dumps([fn(step) for step in range(steps)]))
