"""Reads shards with the `webdataset` package, for webdataset_interop_test.

webdataset_read.py SHARD...  prints one JSON object:
  samples   [{"key", "url", "fields": {ext: base64 of the member's bytes}}], in
            the order webdataset.WebDataset yields them (no decoding)
  openclip  what OpenCLIP's pipeline makes of the same shards (decode "pilrgb",
            rename image="jpg;png;jpeg;webp" text="txt", to_tuple): a count and
            [width, height, caption] per sample

A missing package or a shard webdataset cannot read exits non-zero (the test
fails; it never skips).
"""
import base64
import json
import sys

import webdataset as wds


def raw_samples(shards):
    out = []
    for sample in wds.WebDataset(shards, shardshuffle=False, handler=wds.reraise_exception):
        fields = {k: base64.b64encode(v).decode() for k, v in sample.items() if not k.startswith("__")}
        out.append({"key": sample["__key__"], "url": sample["__url__"], "fields": fields})
    return out


def openclip_view(shards):
    # open_clip_train/data.py get_wds_dataset, without shuffling, resampling or
    # the torchvision transform: the decoding and field selection it relies on.
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(shards),
        wds.tarfile_to_samples(handler=wds.reraise_exception),
        wds.decode("pilrgb", handler=wds.reraise_exception),
        wds.rename(image="jpg;png;jpeg;webp", text="txt"),
        wds.to_tuple("image", "text"),
    )
    return [[img.width, img.height, text] for img, text in pipeline]


def main():
    shards = sys.argv[1:]
    if not shards:
        sys.exit("usage: webdataset_read.py SHARD...")
    print(json.dumps({
        "webdataset": wds.__version__ if hasattr(wds, "__version__") else "?",
        "samples": raw_samples(shards),
        "openclip": openclip_view(shards),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
