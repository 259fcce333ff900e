"""Python's Unicode behaviour over every code point, for tokenizer_unicode_test.

    python tokenizer_unicode_reference.py OUT_DIR

Writes OUT_DIR/unicode.bin (little-endian; `bytes` = u32 length + data):
  u32 block count, then per block of up to 256 consecutive code points
  (surrogates left out):
    u32 first code point, bytes text (the block as UTF-8),
    bytes text.lower(), bytes unicodedata.normalize("NFC", text),
    bytes isspace flags (one byte per code point),
    u32 crc32 and u32 count of open_clip's regex findall on a probe string
  then three lists of (bytes input, bytes expected) pairs, each preceded by u32 count:
    random strings around Σ -> str.lower(),
    entity soup -> html.unescape() + b"\\0" + ftfy.fixes.unescape_html(),
    random bytes -> bytes.decode("utf-8", errors="replace").
The probe for a block is "x{c}1{c}.{c} " repeated over its characters; its
tokens are joined with spaces for the crc.
"""
import html
import os
import random
import struct
import sys
import unicodedata
import zlib

import ftfy.fixes
from open_clip.tokenizer import _tokenizer


def pack(data):
    return struct.pack("<I", len(data)) + data


def probe(chars):
    return "".join(f"x{c}1{c}.{c} " for c in chars)


def tokens_crc(tokens):
    # No token contains a space (spaces match no alternative of the pattern).
    return zlib.crc32(" ".join(tokens).encode("utf-8")) & 0xFFFFFFFF


def blocks():
    out = []
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    for i in range(0, len(cps), 256):
        chunk = cps[i:i + 256]
        text = "".join(map(chr, chunk))
        tokens = _tokenizer.pat.findall(probe(text))
        out.append(struct.pack("<I", chunk[0]) + pack(text.encode("utf-8")) +
                   pack(text.lower().encode("utf-8")) +
                   pack(unicodedata.normalize("NFC", text).encode("utf-8")) +
                   pack(bytes(int(c.isspace()) for c in text)) +
                   struct.pack("<II", tokens_crc(tokens), len(tokens)))
    return struct.pack("<I", len(out)) + b"".join(out)


def pairs(items):
    return struct.pack("<I", len(items)) + b"".join(pack(a) + pack(b) for a, b in items)


def sigma_strings(rng):
    pool = ["Σ", "σ", "ς", "A", "a", "'", ".", "\u0345", "\u0301", "\u00ad", "1", " ",
            "\u02b0", "\u1d2c", "\u2160", "\u24b6", "ǅ", "\u200d", "\U0001d400", ":", "İ"]
    items = []
    for _ in range(3000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
        items.append((text.encode("utf-8"), text.lower().encode("utf-8")))
    return items


def entity_strings(rng):
    names = list(html.entities.html5)
    pool = ["&", "&#", "&#x", "&#X", ";", "#", "x", "1", "12", "65", "0", "128", "9999999",
            "D800", "41", "a", "g", " ", "<", "\t", "é", "amp", "AMP", "lt", "EACUTE",
            "notin", "not", "copy", "ntilde", "NTILDE", "zz"]
    items = []
    for _ in range(3000):
        parts = [rng.choice(pool) for _ in range(rng.randint(1, 8))]
        if rng.random() < 0.5:
            parts.insert(rng.randint(0, len(parts)), "&" + rng.choice(names))
        text = "".join(parts)
        expected = (html.unescape(text).encode("utf-8") + b"\0" +
                    ftfy.fixes.unescape_html(text).encode("utf-8"))
        items.append((text.encode("utf-8"), expected))
    return items


def byte_strings(rng):
    interesting = [0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF,
                   0xF0, 0xF4, 0xF5, 0xFF, 0x9F, 0xA0, 0x90, 0x8F]
    items = []
    for _ in range(5000):
        raw = bytes(rng.choice(interesting) if rng.random() < 0.7 else rng.randint(0, 255)
                    for _ in range(rng.randint(1, 12)))
        items.append((raw, raw.decode("utf-8", errors="replace").encode("utf-8")))
    return items


def main():
    rng = random.Random(1234)
    data = (blocks() + pairs(sigma_strings(rng)) + pairs(entity_strings(rng)) +
            pairs(byte_strings(rng)))
    with open(os.path.join(sys.argv[1], "unicode.bin"), "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
