"""open_clip's side of bench/tokenizer_bench: times open_clip.tokenize.

    python tokenizer_bench.py OUT_DIR COUNT REPEATS

Writes OUT_DIR/captions.bin (u32 count, then u32 length + UTF-8 per caption, from
tests/py/tokenizer_strings.generate_captions) and OUT_DIR/rows.bin (int32
[count, 77], open_clip's result), then prints JSON with the seconds of the first
(cold cache) call and of each warm repeat. Single-threaded: torch.set_num_threads(1).
"""
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "py"))
import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import torch  # noqa: E402
from tokenizer_strings import generate_captions  # noqa: E402


def main():
    out_dir, count, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    captions = generate_captions(count)
    with open(os.path.join(out_dir, "captions.bin"), "wb") as f:
        f.write(struct.pack("<I", len(captions)))
        for text in captions:
            data = text.encode("utf-8")
            f.write(struct.pack("<I", len(data)) + data)
    start = time.perf_counter()
    rows = open_clip.tokenize(captions)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        open_clip.tokenize(captions)
        warm.append(time.perf_counter() - start)
    rows.numpy().astype(np.int32).tofile(os.path.join(out_dir, "rows.bin"))
    print(json.dumps({"cold_s": cold, "warm_s": warm,
                      "tokens": int((rows != 0).sum())}))


if __name__ == "__main__":
    main()
