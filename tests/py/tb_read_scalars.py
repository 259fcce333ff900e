"""Reads every scalar in a TensorBoard log dir with TensorBoard's own loader.

usage: tb_read_scalars.py LOG_DIR OUT_JSON

Writes {"file_version": float, "scalars": {tag: [{"step", "wall_time",
"bits"}...]}} where bits is the float32 value's IEEE bit pattern as an
unsigned int, so the C++ side compares exactly and NaN survives JSON.
"""
import json
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator as ea


def float32_bits(value):
    return struct.unpack("<I", struct.pack("<f", value))[0]


def main():
    log_dir, out_path = sys.argv[1], sys.argv[2]
    # size 0 keeps every point; the default reservoir samples down to 10000.
    acc = ea.EventAccumulator(log_dir, size_guidance={ea.SCALARS: 0})
    acc.Reload()
    scalars = {}
    for tag in acc.Tags()[ea.SCALARS]:
        scalars[tag] = [
            {"step": e.step, "wall_time": e.wall_time, "bits": float32_bits(e.value)}
            for e in acc.Scalars(tag)
        ]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"file_version": acc.file_version, "scalars": scalars}, f)


if __name__ == "__main__":
    main()
