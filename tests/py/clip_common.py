"""Shared by the clip_*.py test scripts: model configs in OpenCLIP's form.

A config argument is either an OpenCLIP model name ("ViT-B-32"), whose JSON
comes from open_clip itself (independent of clipscale's YAML), or a path to a
clipscale YAML (configs/models/*.yaml), converted to OpenCLIP's dict.
"""
import os

import open_clip
import yaml


def yaml_to_openclip(path):
    with open(path, encoding='utf-8') as f:
        c = yaml.safe_load(f)
    v, t = c.get('vision', {}), c.get('text', {})
    layers = v.get('layers', 12)
    if isinstance(layers, list) and len(layers) == 1:
        layers = layers[0]
    vision = {'image_size': v.get('image_size', 224), 'layers': layers,
              'width': v.get('width', 768), 'head_width': v.get('head_width', 64),
              'mlp_ratio': v.get('mlp_ratio', 4.0),
              'patch_dropout': v.get('patch_dropout', 0.0)}
    if not isinstance(layers, list):
        vision['patch_size'] = v.get('patch_size', 16)
    text = {k: t[k] for k in ('context_length', 'vocab_size', 'width', 'heads',
                              'layers', 'mlp_ratio') if k in t}
    cfg = {'embed_dim': c.get('embed_dim', 512), 'quick_gelu': c.get('quick_gelu', False),
           'vision_cfg': vision, 'text_cfg': text}
    if 'init_logit_scale' in c:
        cfg['init_logit_scale'] = c['init_logit_scale']
    return cfg


def openclip_config(name_or_path):
    """(OpenCLIP config dict, name for open_clip.create_model or None)."""
    if os.path.exists(name_or_path):
        return yaml_to_openclip(name_or_path), None
    cfg = open_clip.get_model_config(name_or_path)
    if cfg is None:
        raise SystemExit(f'unknown model {name_or_path}')
    return cfg, name_or_path


def build_model(cfg, patch_dropout=None):
    cfg = dict(cfg)
    if patch_dropout is not None:
        cfg['vision_cfg'] = dict(cfg['vision_cfg'], patch_dropout=patch_dropout)
    return open_clip.model.CLIP(**cfg)
