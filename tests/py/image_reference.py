"""Writes image files and what Pillow/torchvision/open_clip make of them.

Usage: image_reference.py OUT_DIR

Encodes procedural images (edges, gradients, rings, noise) as JPEG/PNG/WebP
with Pillow (and a small PNG writer for layouts Pillow cannot write), then
stores for each file, as raw little-endian arrays:
  <name>.rgb   Image.open(f).convert("RGB"), uint8 HxWx3 (webdataset "pilrgb")
  <name>.f32   open_clip.image_transform(224, is_train=False) of that, float32 3x224x224
and PIL resizes / torchvision center crops of some of them. OUT_DIR/manifest.json
describes everything; corrupt files for the error tests go in OUT_DIR too.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import open_clip
import torch
import torchvision.transforms.functional as TF
from PIL import Image

IMAGE_SIZE = 224


def pattern(width, height, seed):
    """RGB uint8 content with hard edges, smooth gradients and fine texture."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    rings = np.sin(np.hypot(x - width * 0.4, y - height * 0.6) * 0.35)
    checker = ((x // 13 + y // 11) % 2) * 2 - 1
    stripes = np.sign(np.sin(x * 0.9 + y * 0.3))
    r = 128 + 90 * u + 35 * rings
    g = 40 + 160 * v + 30 * checker
    b = 128 + 60 * stripes - 50 * u * v + 25 * np.cos(y * 0.21)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (height, width, 3))
    # A few solid blocks with saturated colours: strong chroma edges for JPEG.
    for k in range(4):
        x0, y0 = rng.randint(0, max(width - 8, 1)), rng.randint(0, max(height - 8, 1))
        img[y0:y0 + height // 5 + 1, x0:x0 + width // 6 + 1] = rng.randint(0, 256, 3)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def raw_png(samples, bit_depth, color_type, interlace=False):
    """A PNG from an HxWxC integer array; sub-byte depths are packed MSB first."""
    height, width, channels = samples.shape

    def scanlines(a):
        out = b""
        for row in a:
            if bit_depth == 16:
                data = row.astype(">u2").tobytes()
            elif bit_depth == 8:
                data = row.astype(np.uint8).tobytes()
            else:
                bits = np.unpackbits(row.reshape(-1, 1).astype(np.uint8), axis=1)[:, 8 - bit_depth:]
                data = np.packbits(bits.reshape(-1)).tobytes()
            out += b"\x00" + data
        return out

    if interlace:
        raw = b"".join(scanlines(samples[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7
                       if samples[y0::dy, x0::dx].size)
    else:
        raw = scanlines(samples)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def encode(img, fmt, **kwargs):
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def image_cases():
    """(name, bytes) for every parity case."""
    rgb = lambda w, h, s: Image.fromarray(pattern(w, h, s))
    gray = lambda w, h, s: rgb(w, h, s).convert("L")
    rgba = np.dstack([pattern(400, 300, 7), (np.arange(400)[None, :] * 255 // 399).repeat(300, 0)])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": Pillow's transform does not apply it
    wide16 = pattern(90, 70, 9).astype(np.uint16) * 257 + np.arange(90)[None, :, None]
    cases = [
        ("jpeg_640x480", encode(rgb(640, 480, 1), "JPEG", quality=90)),
        ("jpeg_tall_300x900", encode(rgb(300, 900, 2), "JPEG", quality=85)),
        ("jpeg_wide_1200x200", encode(rgb(1200, 200, 3), "JPEG", quality=75)),
        ("jpeg_tiny_7x300", encode(rgb(7, 300, 4), "JPEG", quality=95)),
        ("jpeg_small_100x80", encode(rgb(100, 80, 5), "JPEG", quality=90)),
        ("jpeg_444_333x251", encode(rgb(333, 251, 6), "JPEG", quality=92, subsampling=0)),
        ("jpeg_422_257x513", encode(rgb(257, 513, 8), "JPEG", quality=80, subsampling=1)),
        ("jpeg_progressive_500x375", encode(rgb(500, 375, 10), "JPEG", progressive=True)),
        ("jpeg_gray_320x240", encode(gray(320, 240, 11), "JPEG", quality=90)),
        ("jpeg_cmyk_200x150", encode(rgb(200, 150, 12).convert("CMYK"), "JPEG", quality=90)),
        ("jpeg_exif_rotated_240x160", encode(rgb(240, 160, 13), "JPEG", exif=exif.tobytes())),
        ("png_rgb_224x224", encode(rgb(224, 224, 14), "PNG")),
        ("png_rgb_225x300", encode(rgb(225, 300, 15), "PNG")),
        ("png_rgba_400x300", encode(Image.fromarray(rgba.astype(np.uint8), "RGBA"), "PNG")),
        ("png_palette_300x200", encode(rgb(300, 200, 16).quantize(200), "PNG")),
        ("png_palette_trns_160x120", encode(rgb(160, 120, 17).quantize(64), "PNG", transparency=3)),
        ("png_palette_4bit_130x90", encode(rgb(130, 90, 18).quantize(16), "PNG", bits=4)),
        ("png_gray_150x400", encode(gray(150, 400, 19), "PNG")),
        ("png_la_210x170", encode(Image.merge("LA", [gray(210, 170, 20), gray(210, 170, 21)]), "PNG")),
        ("png_1bit_97x61", encode(gray(97, 61, 22).point(lambda p: 255 * (p > 128)).convert("1"), "PNG")),
        ("png_gray16_120x80", encode(Image.fromarray((np.arange(120 * 80).reshape(80, 120) % 400)
                                                     .astype(np.uint16)), "PNG")),
        ("png_gray2bit_75x50", raw_png(pattern(75, 50, 23)[:, :, :1] // 64, 2, 0)),
        ("png_rgb16_90x70", raw_png(wide16, 16, 2)),
        ("png_rgba16_90x70", raw_png(np.dstack([wide16, wide16[:, :, :1]]), 16, 6)),
        ("png_la16_90x70", raw_png(wide16[:, :, :2], 16, 4)),
        ("png_interlaced_101x67", raw_png(pattern(101, 67, 24), 8, 2, interlace=True)),
        ("png_1x1", encode(rgb(1, 1, 25), "PNG")),
        ("webp_lossy_300x200", encode(rgb(300, 200, 26), "WEBP", quality=80)),
        ("webp_lossless_rgba_150x100",
         encode(Image.fromarray(rgba[:100, :150].astype(np.uint8), "RGBA"), "WEBP", lossless=True)),
    ]
    jpeg = dict(cases)["jpeg_small_100x80"]
    # "Corrupt JPEG data: extraneous bytes before marker 0xd9": a warning, decoded anyway.
    cases.append(("jpeg_extraneous_bytes", jpeg[:-2] + b"\x00\x17\x42" + jpeg[-2:]))
    dqt = jpeg.index(b"\xff\xdb")  # the same warning, raised while reading the header
    cases.append(("jpeg_header_junk", jpeg[:dqt] + b"\x13\x37" + jpeg[dqt:]))
    # Luma 1x2, Cb 2x1, Cr 1x1: a sampling layout libjpeg decodes but TurboJPEG
    # 2.1's header call cannot classify. The scan data no longer fits the layout,
    # so the picture is garbage, but well-defined garbage both sides agree on.
    odd = bytearray(dict(cases)["jpeg_444_333x251"])
    sof = odd.index(b"\xff\xc0")
    odd[sof + 11], odd[sof + 14], odd[sof + 17] = 0x12, 0x21, 0x11
    cases.append(("jpeg_unusual_sampling", bytes(odd)))
    png = bytearray(dict(cases)["png_rgb_225x300"])
    idat = png.index(b"IDAT")
    length = struct.unpack(">I", png[idat - 4:idat])[0]
    png[idat + 4 + length] ^= 0xFF  # IDAT CRC: Pillow does not check it
    cases.append(("png_bad_idat_crc", bytes(png)))
    return cases


def error_cases(cases):
    """(name, bytes) that Pillow refuses and that must give an error status."""
    jpeg, png = cases["jpeg_640x480"], cases["png_rgb_225x300"]
    webp = cases["webp_lossy_300x200"]
    sof = jpeg.index(b"\xff\xc0")
    bomb_jpeg = jpeg[:sof + 5] + struct.pack(">HH", 60000, 60000) + jpeg[sof + 9:]
    bomb_png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                + png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + png_chunk(b"IEND", b""))
    bad_ihdr = bytearray(png)
    bad_ihdr[29] ^= 0xFF  # IHDR CRC
    return [
        ("empty", b""),
        ("random_bytes", np.random.RandomState(0).bytes(5000)),
        ("gif", b"GIF89a" + b"\x00" * 100),
        ("jpeg_truncated_half", jpeg[:len(jpeg) // 2]),
        ("jpeg_truncated_no_eoi", jpeg[:-2]),
        ("jpeg_truncated_header", jpeg[:120]),
        ("jpeg_soi_then_garbage", b"\xff\xd8\xff" + np.random.RandomState(1).bytes(3000)),
        ("jpeg_bomb", bomb_jpeg),
        ("png_truncated_half", png[:len(png) // 2]),
        ("png_truncated_header", png[:20]),
        ("png_bad_ihdr_crc", bytes(bad_ihdr)),
        ("png_bomb", bomb_png),
        ("webp_truncated_half", webp[:len(webp) // 2]),
        ("webp_riff_only", webp[:12]),
    ]


def save_raw(out_dir, file_name, array):
    np.ascontiguousarray(array).tofile(os.path.join(out_dir, file_name))
    return file_name


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    preprocess = open_clip.image_transform(IMAGE_SIZE, is_train=False)
    manifest = {"image_size": IMAGE_SIZE, "images": [], "resizes": [], "crops": [], "drafts": [],
                "errors": []}
    cases = image_cases()
    for name, data in cases:
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        opened = Image.open(io.BytesIO(data))
        opened.load()
        rgb = opened.convert("RGB")
        tensor = preprocess(rgb).numpy()
        # open_clip's CsvDataset feeds the image without converting first; for
        # RGB and L that is the same (conversion commutes with per-band resampling).
        direct = preprocess(opened).numpy()
        manifest["images"].append({
            "name": name, "file": name, "mode": opened.mode,
            "width": rgb.width, "height": rgb.height,
            "decoded": save_raw(out_dir, name + ".rgb", np.asarray(rgb)),
            "eval": save_raw(out_dir, name + ".f32", tensor.astype("<f4")),
            "direct_equal": bool(np.array_equal(direct, tensor)),
        })
    decoded = {name: Image.open(io.BytesIO(data)).convert("RGB") for name, data in cases}
    for source, sizes in [("png_rgb_225x300", [(224, 224), (50, 700), (1000, 10), (3, 3), (226, 299),
                                               (225, 150), (400, 300), (1, 1),
                                               # Pillow 13's pass order flips between these
                                               (200, 250), (201, 250), (230, 298)]),
                          ("jpeg_tiny_7x300", [(224, 9600), (7, 224), (300, 7)]),
                          ("png_1x1", [(5, 3)])]:
        for width, height in sizes:
            out = decoded[source].resize((width, height), Image.Resampling.BICUBIC)
            manifest["resizes"].append({
                "source": source, "width": width, "height": height,
                "output": save_raw(out_dir, f"{source}.resize_{width}x{height}.rgb", np.asarray(out))})
    for source, sizes in [("png_rgb_225x300", [(224, 224), (225, 300), (300, 301), (101, 400), (224, 299)]),
                          ("png_1x1", [(4, 3)]), ("jpeg_small_100x80", [(101, 81), (99, 79), (98, 77)])]:
        for width, height in sizes:
            out = TF.center_crop(decoded[source], [height, width])
            manifest["crops"].append({
                "source": source, "width": width, "height": height,
                "output": save_raw(out_dir, f"{source}.crop_{width}x{height}.rgb", np.asarray(out))})
    # JPEG DCT-domain downscaling, Pillow's draft(): the reference for DecodeImageScaled.
    for source, min_sides in [("jpeg_640x480", [60, 79, 80, 100, 160, 224, 320, 400, 1000]),
                              ("jpeg_422_257x513", [32, 64, 100]), ("jpeg_gray_320x240", [50]),
                              ("jpeg_cmyk_200x150", [30]), ("jpeg_progressive_500x375", [90])]:
        for min_side in min_sides:
            draft = Image.open(io.BytesIO(dict(cases)[source]))
            draft.draft("RGB", (min_side, min_side))
            out = draft.convert("RGB")
            manifest["drafts"].append({
                "source": source, "min_side": min_side, "width": out.width, "height": out.height,
                "output": save_raw(out_dir, f"{source}.draft_{min_side}.rgb", np.asarray(out))})
    for name, data in error_cases(dict(cases)):
        with open(os.path.join(out_dir, "error_" + name), "wb") as f:
            f.write(data)
        try:
            Image.open(io.BytesIO(data)).convert("RGB")
            pillow_error = ""
        except Exception as e:  # noqa: BLE001 - any Pillow failure is what we record
            pillow_error = f"{type(e).__name__}: {e}"
        manifest["errors"].append({"name": name, "file": "error_" + name, "pillow_error": pillow_error})
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(manifest['images'])} images, {len(manifest['resizes'])} resizes, "
          f"{len(manifest['crops'])} crops, {len(manifest['errors'])} error cases; torch {torch.__version__}")


if __name__ == "__main__":
    main()
