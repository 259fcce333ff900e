"""Deterministic test and benchmark strings for the CLIP tokenizer.

generate_cases() -> [(utf8_bytes, context_length)] for tokenizer_reference.py;
generate_captions(n, seed) -> caption-like str for the benchmark.
"""
import random

NOUNS = ["dog", "cat", "car", "house", "tree", "woman", "man", "child", "bird", "boat",
         "pizza", "mountain", "bicycle", "street", "guitar", "laptop", "flower", "horse",
         "kitchen", "beach", "skyscraper", "giraffe", "umbrella", "sandwich", "train"]
ADJECTIVES = ["red", "small", "happy", "old", "wooden", "shiny", "blurry", "vintage",
              "colorful", "dark", "bright", "tiny", "enormous", "rusty", "fluffy"]
PLACES = ["park", "city", "forest", "desert", "beach", "studio", "garden", "market",
          "river bank", "snowy field", "parking lot", "living room"]
TEMPLATES = [
    "a photo of a {adj} {noun}.",
    "A {adj} {noun} in the {place}",
    "{Noun} and {noun2} at the {place}, {year}",
    "close-up of the {adj} {noun}'s face",
    "There's a {noun} next to the {noun2} - it's {adj}!",
    "{adj} {noun} #{noun2} @user http://example.com/{noun}.jpg",
    "Stock image: {adj} {noun} on white background (ID {num})",
    "{NOUN} FOR SALE!!! only ${num}.99",
    "I'm sure they'll say we'd go; you've seen the {noun}",
    "the {noun} is {num}cm tall & {num2}kg",
]
# Words in many scripts (all NFC and unchanged by ftfy).
WORLD = ["café", "naïve", "résumé", "Ångström", "über", "straße", "São Paulo",
         "ΣΟΦΙΑ", "σοφός", "ΟΔΟΣ", "Σ", "ΑΣ.", "ὈΔΥΣΣΕΎΣ", "Привет", "МИР", "ЁЛКА",
         "مرحبا", "שלום", "नमस्ते", "สวัสดี", "안녕하세요", "こんにちは", "カタカナ",
         "你好世界", "北京市", "Đà Nẵng", "İstanbul", "ışık", "DİYARBAKIR", "Ǆemal",
         "ǅ", "ﬁx", "Kelvin K", "ſtraße", "'ſ", "ΐ", "ᾼ", "ᾳ", "µ", "ﬀ",
         "١٢٣", "१२३", "²³", "½", "Ⅻ", "①", "𝟘𝟙", "٣٫٥", "𐍈", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
         "ⓐⓑⓒ", "Ⓐ", "ͅ", "aͅb", "x\u0345y", "ǰ", "ŉ", "ĳ", "ꭰ", "ᏸ", "ꮰ"]
EMOJI = ["🐶", "👍🏽", "👨‍👩‍👧", "🇺🇸", "❤️", "1️⃣", "😀😃😄", "🏳️‍🌈", "🤖", "🧑🏿‍🚀",
         "☕", "✨", "🍕🍔", "🔥🔥🔥"]
ENTITIES = ["&amp;", "&quot;", "&#39;", "&lt;b&gt;", "&lt;/b&gt;", "&nbsp;", "&copy;",
            "&#x1F600;", "&amp;amp;", "&eacute;", "&EACUTE;", "&notit;", "&#0;", "&#128;",
            "&#65", "&#x41g;", "&ampx;", "&AMP;", "&Amp;", "&#xD800;", "&#1114112;",
            "&#99999999999999999999;", "&#1;", "&#11;", "&#13;", "&", "&;", "&#;",
            "&#x;", "&nbsp", "&lt", "&copy2024", "&NTILDE;", "&nTILDE;", "&SZLIG;",
            "&hellip;", "&rsquo;", "&ldquo;&rdquo;", "&#8217;", "&#x2019;",
            "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;", "&Jscr;", "&HilbertSpace;"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\u2028",
          "\x1c", "\x85", "\u200b", "\u180e", "\ufeff", " \t \n "]
PUNCT = ["!!!", "???", "...", "--", "—", "…", "«»", "„“", "‘quoted’", "“quoted”",
         "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "'D", "don't", "it’s",
         "(", ")", "[]", "{}", "#", "$", "%", "^", "*", "~", "`", "|", "\\", "/",
         "<start_of_text>", "<END_OF_TEXT>", "<ſtart_of_text>", "</w>", "<|endoftext|>",
         "，", "。", "！", "ＡＢＣ", "１２３", "ｶﾀｶﾅ", "\x1b[31mred\x1b[0m", "\x07", "\x7f",
         "\x00", "\ufffd", "\U000e0041", "\ue000"]
MOJIBAKE = ["cafÃ©", "â€œquotedâ€\x9d", "Ã¼ber", "Ã\xa0 la carte", "schÃ¶n",
            "â€™s", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚"]
INVALID_UTF8 = [b"\xff", b"abc\xc3", b"\xe2\x82", b"\xe2\x82abc", b"\xed\xa0\x80x",
                b"\xf0\x9f\x98", b"\xc0\xaf", b"\xf5\x80\x80\x80", b"a\x80b\xbfc",
                b"photo of a \xe9t\xe9", b"\xf4\x90\x80\x80", b"\xe0\x80\x80"]


def caption(rng):
    noun, noun2 = rng.choice(NOUNS), rng.choice(NOUNS)
    text = rng.choice(TEMPLATES).format(
        adj=rng.choice(ADJECTIVES), noun=noun, noun2=noun2, Noun=noun.capitalize(),
        NOUN=noun.upper(), place=rng.choice(PLACES), year=rng.randint(1900, 2030),
        num=rng.randint(0, 99999), num2=rng.randint(0, 500))
    return text


def piece(rng):
    kind = rng.random()
    if kind < 0.30:
        return caption(rng)
    pool = rng.choice([WORLD, EMOJI, ENTITIES, SPACES, PUNCT, NOUNS])
    return rng.choice(pool)


def mixed(rng):
    parts = [piece(rng) for _ in range(rng.randint(1, 6))]
    glue = rng.choice(["", " ", " ", "  ", "\n", "-"])
    return glue.join(parts)


def random_codepoints(rng):
    """Strings from code points of many blocks, incl. combining marks and Σ."""
    blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff),
              (0x590, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x1e00, 0x1fff),
              (0x2000, 0x206f), (0x2100, 0x218f), (0x2460, 0x24ff), (0x3000, 0x30ff),
              (0x4e00, 0x4eff), (0xac00, 0xacff), (0xfb00, 0xfb4f), (0xff00, 0xffef),
              (0x1d400, 0x1d7ff), (0x1f300, 0x1f6ff), (0x10400, 0x1044f)]
    out = []
    for _ in range(rng.randint(1, 24)):
        lo, hi = rng.choice(blocks)
        out.append(chr(rng.randint(lo, hi)))
        if rng.random() < 0.2:
            out.append(rng.choice([" ", "Σ", "ς", "A", "'", "."]))
    return "".join(out)


def long_caption(rng):
    return " ".join(caption(rng) for _ in range(rng.randint(8, 25)))


def generate_cases():
    rng = random.Random(20240601)
    cases = [("", 77), (" ", 77), ("\n\t  ", 77), ("a", 77), ("A.", 77)]
    for fixed in WORLD + EMOJI + ENTITIES + SPACES + PUNCT + MOJIBAKE:
        cases.append((fixed, 77))
        cases.append(("x " + fixed + " y", 77))
    cases += [(caption(rng), 77) for _ in range(1400)]
    cases += [(mixed(rng), 77) for _ in range(900)]
    cases += [(random_codepoints(rng), 77) for _ in range(400)]
    cases += [(long_caption(rng), 77) for _ in range(120)]
    cases += [(long_caption(rng), rng.choice([1, 2, 3, 5, 16, 32])) for _ in range(40)]
    cases += [(mixed(rng), rng.choice([1, 2, 8])) for _ in range(20)]
    cases += [("".join(rng.choice(WORLD + EMOJI) for _ in range(60)), 77) for _ in range(20)]
    out = [(text.encode("utf-8"), ctx) for text, ctx in cases]
    out += [(raw, 77) for raw in INVALID_UTF8]
    out += [(bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 30))), 77)
            for _ in range(30)]
    return out


def generate_captions(n, seed=7):
    rng = random.Random(seed)
    return [caption(rng) if rng.random() < 0.9 else mixed(rng) for _ in range(n)]
