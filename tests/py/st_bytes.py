"""Reference side of tests/core/safetensors_test.cc, byte level.

  st_bytes.py SPEC IN OUT   loads IN with safetensors.torch.load_file and checks names,
                           dtypes, shapes, bytes and metadata against SPEC, then writes
                           SPEC's tensors to OUT with safetensors.torch.save_file;
                           prints "ok"

SPEC is JSON: {"metadata": {...}, "tensors": [{"name", "dtype", "shape"}, ...]}.
Byte k of the i-th tensor is (31*k + 7*i + 3) % 256 (% 2 for BOOL), the same
pattern the C++ test fills in, so neither side needs the other's file to know
what the data should be.
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def pattern(index, entry):
    dtype = DTYPES[entry["dtype"]]
    count = 1
    for dim in entry["shape"]:
        count *= dim
    nbytes = count * torch.empty((), dtype=dtype).element_size()
    k = torch.arange(nbytes, dtype=torch.int64)
    raw = (31 * k + 7 * index + 3) % (2 if entry["dtype"] == "BOOL" else 256)
    return raw.to(torch.uint8).view(dtype).reshape(entry["shape"])


def as_bytes(tensor):
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def check(path, expected, metadata):
    loaded = load_file(path)
    assert sorted(loaded) == sorted(expected), (sorted(loaded), sorted(expected))
    for name, want in expected.items():
        got = loaded[name]
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        assert torch.equal(as_bytes(got), as_bytes(want)), name
    with safe_open(path, framework="pt") as f:
        assert (f.metadata() or None) == metadata, (f.metadata(), metadata)


def main():
    spec_path, in_path, out_path = sys.argv[1:4]
    with open(spec_path) as f:
        spec = json.load(f)
    expected = {e["name"]: pattern(i, e) for i, e in enumerate(spec["tensors"])}
    metadata = spec.get("metadata") or None
    check(in_path, expected, metadata)
    save_file(expected, out_path, metadata=metadata)
    print("ok")


if __name__ == "__main__":
    main()
