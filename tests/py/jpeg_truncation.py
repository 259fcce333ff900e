"""Writes JPEGs whose first libjpeg warning is harmless and says what Pillow makes
of them, for the image truncation test.

jpeg_truncation.py OUT_DIR -> JSON {name: true if Pillow decodes it (convert("RGB"))}
  junk.jpg      two junk bytes before the frame header (libjpeg warns; Pillow decodes)
  junk_cut.jpg  the same file cut inside its entropy-coded data (Pillow: truncated)
  junk_eoi.jpg  the same file ending right after the scan header's data, no EOI
"""
import io
import json
import os
import sys

from PIL import Image

out = sys.argv[1]
image = Image.new("RGB", (64, 48))
for y in range(48):
    for x in range(64):
        image.putpixel((x, y), ((x * 4) % 256, (y * 5) % 256, (x * y) % 256))
buf = io.BytesIO()
image.save(buf, "JPEG", quality=90)
data = buf.getvalue()
sof = data.find(b"\xff\xc0")
junk = data[:sof] + b"\x12\x34" + data[sof:]
files = {"junk.jpg": junk, "junk_cut.jpg": junk[: len(junk) * 3 // 4],
         "junk_eoi.jpg": junk[:-2]}
verdict = {}
for name, content in files.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(content)
    try:
        Image.open(io.BytesIO(content)).convert("RGB")
        verdict[name] = True
    except OSError:
        verdict[name] = False
print(json.dumps(verdict))
