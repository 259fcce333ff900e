"""Reference token ids from open_clip for tokenizer_test.

    python tokenizer_reference.py OUT_DIR

Writes OUT_DIR/cases.bin: a deterministic set of caption-like and adversarial
strings (Unicode letters and digits, emoji, CJK, accents, HTML entities,
whitespace and punctuation runs, empty strings, captions past 77 tokens, a few
invalid UTF-8 byte strings) with what open_clip makes of them. Format, all
little-endian: u32 count, then per case
    u8 category, u32 context_length, bytes input, bytes lite_fixed, bytes cleaned,
    i32[context_length] row, i32-list encode, bytes decode
where `bytes` is u32 length + data and `i32-list` is u32 count + values.
category: 0 when ftfy.fix_text(s) == s; 1 when ftfy changes s but only through
fixers other than its mojibake repair (fix_text(s) == fix_text(s,
fix_encoding=False)); 2 otherwise (the C++ side does not guess encodings).
Prints the counts per category as JSON.
"""
import html
import json
import os
import struct
import sys

import ftfy
import open_clip
from open_clip.tokenizer import _tokenizer, whitespace_clean

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_strings import generate_cases  # noqa: E402


def lite_clean(text):
    """open_clip's _clean_lower with ftfy minus fix_encoding: what C++ reproduces."""
    fixed = ftfy.fix_text(text, fix_encoding=False)
    unescaped = html.unescape(html.unescape(fixed)).strip()
    return fixed, whitespace_clean(unescaped).lower()


def category(text):
    fixed = ftfy.fix_text(text)
    if fixed == text:
        return 0
    return 1 if fixed == ftfy.fix_text(text, fix_encoding=False) else 2


def pack_bytes(data):
    return struct.pack("<I", len(data)) + data


def pack_ids(ids):
    return struct.pack("<I", len(ids)) + struct.pack(f"<{len(ids)}i", *ids)


def main():
    out_dir = sys.argv[1]
    cases = generate_cases()
    counts = [0, 0, 0]
    blob = [struct.pack("<I", len(cases))]
    for raw, context_length in cases:
        text = raw.decode("utf-8", errors="replace")
        cat = category(text)
        counts[cat] += 1
        lite, cleaned = lite_clean(text)
        row = open_clip.tokenize([text], context_length=context_length)[0].tolist()
        ids = _tokenizer.encode(text)
        blob.append(struct.pack("<BI", cat, context_length))
        blob.append(pack_bytes(raw))
        blob.append(pack_bytes(lite.encode("utf-8")))
        blob.append(pack_bytes(cleaned.encode("utf-8")))
        blob.append(struct.pack(f"<{context_length}i", *row))
        blob.append(pack_ids(ids))
        blob.append(pack_bytes(_tokenizer.decode(ids).encode("utf-8")))
    with open(os.path.join(out_dir, "cases.bin"), "wb") as f:
        f.write(b"".join(blob))
    print(json.dumps({"cases": len(cases), "ftfy_unchanged": counts[0],
                      "ftfy_changed_without_mojibake": counts[1],
                      "ftfy_mojibake_repair": counts[2]}))


if __name__ == "__main__":
    main()
