"""Reference tensors for clipscale's CLIP parity test.

usage: clip_reference.py CONFIG OUT_DIR [--batch N] [--seed S] [--patch-dropout P]
                         [--quick-gelu]

Builds open_clip's CLIP at random init (torch.manual_seed(S)) and writes
  OUT_DIR/weights.safetensors  the state dict, OpenCLIP's keys
  OUT_DIR/io.safetensors       images, tokens (open_clip.tokenize of captions),
                               image_features, text_features (normalised),
                               logits_per_image, logit_scale_exp (eval, fp32)
With --patch-dropout P the ViT is built with patch_dropout=P and io also holds
train_image_features: train mode, torch.manual_seed(S + 1) right before
encode_image, so the patch choice is reproducible from C++. --quick-gelu
overrides the config's activation (OpenAI's x * sigmoid(1.702 x)).
"""
import argparse

import open_clip
import torch
from safetensors.torch import save_file

from clip_common import build_model, openclip_config

CAPTIONS = [
    'a photo of a cat sitting on a sofa',
    'a diagram of a neural network',
    'two dogs playing in the snow at night',
    'the quick brown fox jumps over the lazy dog, again and again and again',
    'an empty street',
    'a bowl of ramen with an egg',
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument('config')
    p.add_argument('out_dir')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--patch-dropout', type=float, default=None)
    p.add_argument('--quick-gelu', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(2)

    cfg, _ = openclip_config(a.config)
    if a.quick_gelu:
        cfg = dict(cfg, quick_gelu=True)
    torch.manual_seed(a.seed)
    model = build_model(cfg, a.patch_dropout).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              f'{a.out_dir}/weights.safetensors')

    size = cfg['vision_cfg']['image_size']
    g = torch.Generator().manual_seed(a.seed + 7)
    images = torch.randn(a.batch, 3, size, size, generator=g)
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(a.batch)]
    tokens = open_clip.tokenize(captions, context_length=cfg['text_cfg']['context_length'])

    with torch.no_grad():
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
        scale = model.logit_scale.exp()
        out = {'images': images, 'tokens': tokens.long(),
               'image_features': image_features, 'text_features': text_features,
               'logits_per_image': scale * image_features @ text_features.T,
               'logit_scale_exp': scale}
        if a.patch_dropout is not None:
            model.train()
            torch.manual_seed(a.seed + 1)
            out['train_image_features'] = model.encode_image(images, normalize=True)
    save_file({k: v.contiguous() for k, v in out.items()}, f'{a.out_dir}/io.safetensors')
    print('ok')


if __name__ == '__main__':
    main()
