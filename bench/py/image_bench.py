"""Pillow/open_clip's side of bench/image_bench: decode + eval preprocess timings.

    python image_bench.py OUT_DIR REPEATS

Writes OUT_DIR/photo.jpg (1024x768, quality 90, 4:2:0, procedural content from
tests/py/image_reference.pattern) and prints JSON with the median seconds of
Image.open(...).convert("RGB") and of open_clip.image_transform(224,
is_train=False) on the decoded image. Single-threaded: torch.set_num_threads(1).
"""
import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "py"))
import open_clip  # noqa: E402
import torch  # noqa: E402
from image_reference import pattern  # noqa: E402
from PIL import Image  # noqa: E402


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    out_dir, repeats = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    path = os.path.join(out_dir, "photo.jpg")
    Image.fromarray(pattern(1024, 768, 1)).save(path, "JPEG", quality=90)
    data = open(path, "rb").read()
    decode = lambda: Image.open(io.BytesIO(data)).convert("RGB")
    rgb = decode()
    preprocess = open_clip.image_transform(224, is_train=False)
    preprocess(rgb)
    print(json.dumps({"decode_s": median_seconds(decode, repeats),
                      "eval_s": median_seconds(lambda: preprocess(rgb), repeats)}))


if __name__ == "__main__":
    main()
