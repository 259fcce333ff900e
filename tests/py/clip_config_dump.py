"""Writes OpenCLIP model configs as clipscale model YAML (configs/models schema).

usage: clip_config_dump.py OUT_DIR NAME...   (writes OUT_DIR/NAME.yaml each)

Fails if the OpenCLIP config sets a field clipscale's ModelConfig does not
model (anything beyond the CLIPVisionCfg/CLIPTextCfg defaults it mirrors).
"""
import dataclasses
import math
import sys

import open_clip
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

VISION_KEYS = ('image_size', 'layers', 'width', 'head_width', 'mlp_ratio', 'patch_size',
               'patch_dropout')
TEXT_KEYS = ('context_length', 'vocab_size', 'width', 'heads', 'layers', 'mlp_ratio')
TOP_KEYS = ('embed_dim', 'quick_gelu', 'init_logit_scale', 'vision_cfg', 'text_cfg')


def unsupported(cfg, cls, keys):
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    return [k for k, v in cfg.items() if k not in keys and v != defaults.get(k, object())]


def to_yaml(name):
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        sys.exit(f'unknown model {name}')
    v = dataclasses.asdict(CLIPVisionCfg(**cfg['vision_cfg']))
    t = dataclasses.asdict(CLIPTextCfg(**cfg['text_cfg']))
    bad = [k for k in cfg if k not in TOP_KEYS]
    bad += ['vision.' + k for k in unsupported(cfg['vision_cfg'], CLIPVisionCfg, VISION_KEYS)]
    bad += ['text.' + k for k in unsupported(cfg['text_cfg'], CLIPTextCfg, TEXT_KEYS)]
    if bad:
        sys.exit(f'{name}: unsupported OpenCLIP fields: ' + ', '.join(bad))
    resnet = isinstance(v['layers'], (list, tuple))
    layers = list(v['layers']) if resnet else [v['layers']]
    lines = [f"embed_dim: {cfg['embed_dim']}",
             f"quick_gelu: {str(cfg.get('quick_gelu', False)).lower()}",
             f"init_logit_scale: {cfg.get('init_logit_scale', math.log(1 / 0.07))!r}",
             'vision:']
    for k in VISION_KEYS:
        if k == 'layers':
            lines.append(f'  layers: {layers}')
        elif not (k == 'patch_size' and resnet):  # ResNets have no patches
            lines.append(f'  {k}: {v[k]!r}')
    lines.append('text:')
    lines += [f'  {k}: {t[k]!r}' for k in TEXT_KEYS]
    return '\n'.join(lines) + '\n'


def main():
    out_dir = sys.argv[1]
    for name in sys.argv[2:]:
        with open(f'{out_dir}/{name}.yaml', 'w', encoding='utf-8') as f:
            f.write(to_yaml(name))
    print('ok')


if __name__ == '__main__':
    main()
