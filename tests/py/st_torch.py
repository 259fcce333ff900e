"""Reference side of tests/models/weights_io_test.cc, value level.

  st_torch.py IN OUT   checks that safetensors.torch.load_file(IN) holds exactly the
                       tensors of reference_tensors() (dtype, shape, values) and the
                       metadata {"writer": "clipscale"}, then writes reference_tensors()
                       to OUT with safetensors.torch.save_file; prints "ok"

The C++ test builds the same tensors with the same LibTorch operations, so the
values agree bit for bit without either side reading the other's file first.
"""
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

DTYPES = {
    "f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
    "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8,
    "u8": torch.uint8, "bool": torch.bool,
}


def make(dtype, shape):
    n = 1
    for dim in shape:
        n *= dim
    if dtype == torch.bool:
        values = torch.arange(n, dtype=torch.int64) % 3 == 0
    elif dtype.is_floating_point:
        values = (torch.arange(n, dtype=torch.float64) * 0.37 - 5).to(dtype)
    else:
        values = (torch.arange(n, dtype=torch.int64) * 3 + 1).to(dtype)
    return values.reshape(shape)


def reference_tensors():
    tensors = {f"x_{name}": make(dtype, [2, 3, 4]) for name, dtype in DTYPES.items()}
    tensors["scalar"] = make(torch.float32, [])
    tensors["empty"] = make(torch.float16, [0, 5])
    return tensors


def main():
    in_path, out_path = sys.argv[1:3]
    expected = reference_tensors()
    loaded = load_file(in_path)
    assert sorted(loaded) == sorted(expected), (sorted(loaded), sorted(expected))
    for name, want in expected.items():
        got = loaded[name]
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        assert torch.equal(got, want), name
    with safe_open(in_path, framework="pt") as f:
        assert f.metadata() == {"writer": "clipscale"}, f.metadata()
    save_file(expected, out_path)
    print("ok")


if __name__ == "__main__":
    main()
