"""Writes the fuzzers' seed corpora (tests/fuzz/corpus/<target>/), run with the
project venv's Python (Pillow, tarfile). Deterministic; the output is checked
in, so this only needs rerunning when a seed is added:

    ~/.cache/clipscale/venv/bin/python tests/fuzz/make_seeds.py
"""
import io
import json
import os
import shutil
import struct
import tarfile

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def tar_bytes(fmt, members, keep_end=True):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue().rstrip(b"\0")
    raw += b"\0" * (-len(raw) % 512)
    return raw + (b"\0" * 1024 if keep_end else b"")


def tar_seeds():
    sample = [("000000001.jpg", b"\xff\xd8\xff\xe0jpeg"), ("000000001.txt", b"a caption"),
              ("000000001.json", b'{"key": 1}'), ("000000002.txt", b"second"),
              ("__meta__.json", b"{}")]
    put("tar_fuzz", "ustar.tar", tar_bytes(tarfile.USTAR_FORMAT, sample))
    put("tar_fuzz", "no_end_blocks.tar", tar_bytes(tarfile.USTAR_FORMAT, sample[:2], keep_end=False))
    long = "d/" + "n" * 120 + "/000000003.txt"
    put("tar_fuzz", "gnu_long.tar", tar_bytes(tarfile.GNU_FORMAT, [(long, b"long"), ("x.y", b"")]))
    put("tar_fuzz", "pax.tar", tar_bytes(tarfile.PAX_FORMAT,
                                         [("caf\u00e9/000000004.txt", "\u00e9".encode()),
                                          (long, b"x" * 600)]))


def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def safetensors_seeds():
    put("safetensors_fuzz", "two.safetensors", safetensors(
        [("a", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
         ("b.weight", "I64", [1], struct.pack("<q", 7))], {"format": "pt"}))
    put("safetensors_fuzz", "scalar_empty.safetensors", safetensors(
        [("s", "BF16", [], b"\x80\x3f"), ("e", "U8", [0, 3], b""), ("t", "BOOL", [3], b"\1\0\1")]))
    put("safetensors_fuzz", "empty.safetensors", safetensors([]))
    # Regression: 0 bytes, but the element count overflows int64 on the way.
    put("safetensors_fuzz", "overflow_then_zero.safetensors",
        safetensors([("o", "U8", [2 ** 62, 2, 0], b"")]))


def config_seeds():
    with open(os.path.join(ROOT, "configs", "models", "tiny.yaml"), "rb") as f:
        put("config_fuzz", "tiny.yaml", f.read())
    put("config_fuzz", "everything.yaml", b"""\
i: 3
big: 9000000000
x: 1.5e-3
f: -2
flag: true
text: "quoted: yes"
ints: [1, 2, 3]
words: one
maybe: .nan
items:
  - {name: a, count: 1}
  - name: b
model:
  embed_dim: 64
  init_logit_bias: -10
  vision: {layers: [3, 4, 6, 3], width: 64}
""")
    put("config_fuzz", "overrides.yaml", b"i: 1\nmodel:\n  text: {width: 8}\n---set\n"
        b"model.vision.width=32\nwords=[x, y]\nitems=[{name: z}]\n")


def tokenizer_seeds():
    texts = [b"\x4da photo of a cat.", b"\x20Hello&amp;amp; world&nbsp;&#x1F600; it's 2024!!",
             "\x05caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \ufb01 \u2163".encode(),
             b"\x08\xff\xfe invalid \xc3( utf-8 \xed\xa0\x80", "\x4d\u4e2d\u6587 \U0001F600\u200d".encode()]
    for i, t in enumerate(texts):
        put("tokenizer_fuzz", "text%d" % i, t)


def image_seeds():
    base = Image.new("RGB", (16, 12))
    for y in range(12):
        for x in range(16):
            base.putpixel((x, y), (x * 16, y * 20, (x * y) % 256))
    def save(name, image, min_side, **kw):
        buf = io.BytesIO()
        image.save(buf, **kw)
        put("image_fuzz", name, bytes([min_side]) + buf.getvalue())
    save("baseline.jpg", base, 4, format="JPEG", quality=50)
    save("progressive.jpg", base, 2, format="JPEG", progressive=True, subsampling=0)
    save("grey.jpg", base.convert("L"), 0, format="JPEG")
    save("cmyk.jpg", base.convert("CMYK"), 8, format="JPEG")
    save("rgb.png", base, 0, format="PNG")
    save("rgba_interlaced.png", base.convert("RGBA"), 0, format="PNG", interlace=1)
    pal = base.convert("P", palette=Image.ADAPTIVE, colors=8)
    save("palette_trns.png", pal, 0, format="PNG", transparency=0)
    save("grey16.png", base.convert("I;16"), 0, format="PNG")
    save("lossy.webp", base, 0, format="WEBP", quality=40)
    save("lossless_alpha.webp", base.convert("RGBA"), 0, format="WEBP", lossless=True)
    # Regression (found by image_fuzz): junk before the frame header, then the
    # file ends inside the scan; it decoded to a grey 23308x528 CMYK image.
    put("image_fuzz", "truncated_after_junk.jpg", bytes.fromhex(
        "02ffd8ffe000104a4649462720222c393d323c2e331431ffc00014085b0c0210044332"
        "004d11005911004b11e597ffda000e0443004d0059004bff"))
    # Regression (found by image_fuzz in this harness, not the decoder): a TEM
    # marker (FF 01, no length field) before the frame; read as if it had a
    # length, the walk lands inside a comment that holds a fake 65535x65535
    # frame header, which libjpeg skips with the comment.
    buf = io.BytesIO()
    base.save(buf, format="JPEG", quality=50)
    jpeg = buf.getvalue()
    put("image_fuzz", "tem_marker_before_frame.jpg", bytes([4]) + jpeg[:2] + bytes.fromhex(
        "ff010004" "fffe000c" "ffc0001108ffffffff03") + jpeg[2:])


if __name__ == "__main__":
    shutil.rmtree(CORPUS, ignore_errors=True)
    tar_seeds()
    safetensors_seeds()
    config_seeds()
    tokenizer_seeds()
    image_seeds()
