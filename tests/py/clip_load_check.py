"""Loads clipscale-written CLIP weights into open_clip, strictly.

usage: clip_load_check.py CONFIG WEIGHTS

CONFIG is an OpenCLIP model name (the model comes from open_clip.create_model)
or a clipscale YAML (open_clip.model.CLIP(**cfg)). Fails (exit 1) unless
load_state_dict(strict=True) succeeds and every tensor's dtype equals the
model's (load_state_dict would silently convert). Prints "ok <n_tensors>".
"""
import sys

import open_clip
import torch
from safetensors.torch import load_file

from clip_common import build_model, openclip_config


def main():
    config, weights = sys.argv[1], sys.argv[2]
    cfg, name = openclip_config(config)
    model = open_clip.create_model(name) if name else build_model(cfg)
    state = load_file(weights)
    expected = model.state_dict()
    bad = [f'{k}: {v.dtype} vs {expected[k].dtype}'
           for k, v in state.items() if k in expected and v.dtype != expected[k].dtype]
    if bad:
        sys.exit('dtype mismatch: ' + '; '.join(bad))
    model.load_state_dict(state, strict=True)  # raises on missing/unexpected/shape
    for k, v in model.state_dict().items():
        if not torch.equal(v, state[k]):
            sys.exit(f'{k} differs after loading')
    print('ok', len(state))


if __name__ == '__main__':
    main()
