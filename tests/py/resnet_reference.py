"""Reference side of tests/models/resnet_test.cc: OpenCLIP's RN50 image tower.

  resnet_reference.py SEED OUT_DIR

Writes to OUT_DIR:
  init.safetensors     model.visual.state_dict() right after
                       torch.manual_seed(SEED); open_clip.create_model('RN50')
  weights.safetensors  the same tower with every BatchNorm's affine parameters and
                       running statistics randomised (fresh init zeroes bn3.weight,
                       which would switch off every residual branch and hide bugs there)
  io.safetensors       input [2,3,224,224], probe [2,1024];
                       eval_output (eval mode, no grad);
                       train_output (train mode) and, for loss = sum(train_output * probe),
                       grad.<name> for every parameter; after.<name> for every buffer
                       after that training-mode forward (running stats, counters)
"""
import os
import sys

import torch
import open_clip
from safetensors.torch import save_file


def randomise_batch_norms(module, generator):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0.0, 0.1, generator=generator)
                m.running_mean.normal_(0.0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 1.5, generator=generator)
                m.num_batches_tracked.fill_(3)


def main():
    seed, out_dir = int(sys.argv[1]), sys.argv[2]
    torch.manual_seed(seed)
    visual = open_clip.create_model("RN50").visual
    save_file(visual.state_dict(), os.path.join(out_dir, "init.safetensors"))

    generator = torch.Generator().manual_seed(seed + 1)
    randomise_batch_norms(visual, generator)
    save_file(visual.state_dict(), os.path.join(out_dir, "weights.safetensors"))

    images = torch.randn(2, 3, 224, 224, generator=generator)
    probe = torch.randn(2, 1024, generator=generator)
    io = {"input": images, "probe": probe}
    visual.eval()
    with torch.no_grad():
        io["eval_output"] = visual(images)
    visual.train()
    out = visual(images)
    (out * probe).sum().backward()
    io["train_output"] = out.detach()
    for name, param in visual.named_parameters():
        io["grad." + name] = param.grad
    for name, buffer in visual.named_buffers():
        io["after." + name] = buffer
    save_file(io, os.path.join(out_dir, "io.safetensors"))
    print("ok")


if __name__ == "__main__":
    main()
