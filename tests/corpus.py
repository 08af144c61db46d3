"""Prompts for the in-sheet tokenizer: every branch of GPT-2's pre-tokenizer and of UTF-8, and the limits.

CORPUS: at least 200 strings; the expected ids always come from tiktoken (see test_sheet_tokenizer.py).
long_words(M): words of exactly M bytes (the limit) and one byte over, for a workbook with M bytes per word.
"""
from __future__ import annotations

PAPER = [
    "funology", "reinjury", " funology", " reinjury", "funology reinjury",
    "Mike is quick. He moves", "If today is Tuesday, tomorrow is", "Mike pulls out his",
    " quickly", " Wednesday", " phone", " lightsaber", " Jedi", "Hello world", "Hello, world!",
]

CONTRACTIONS = [
    "it's", "don't", "we're", "I've", "I'm", "we'll", "he'd", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
    "IT'S", "WE'LL", "I'M", "He'S", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "you'Re", "they'Ve",
    "!'s", "x'sy", "''s", "'''", "rock'n'roll", "'re'", "'ll've", "can't won't shan't", "O'Reilly",
    "rock 'n' roll", " 's", "a 's", "'s's", "it'sn't", "'", "' ", " '", "y'all", "ma'am", "'d've", "'dx",
]

NUMBERS = [
    "123", "3.14159", "1,000,000", "2024-11-26", "x1y2z3", "١٢٣", "½ cup", "Ⅻ", "4th", " 42", "  42",
    "007", "1e10", "-5", "+7", "12345678901234567890", "٣٫١٤", "²³", "a1 b2", "10%",
]

PUNCTUATION = [
    "!!!", "?!...", "(a)", "--", "—", "...", "@#$%^&*", "a.b.c", " ...", "::", '"quoted"', "[1, 2]",
    "{x: y}", "a->b", "<|endoftext|>", "C++", "#hashtag", "$100", "e.g.", "U.S.A.", "user@example.com",
    "https://example.com/a?b=c", "def f(x): return x**2", "~/path/to/file.txt", "«Bonjour»", "¿Qué?", "¡Hola!",
    "• item", "→ ←", "© 2024", "™", "°C", "±", "§ 5", "‰", "…", "“smart” ‘quotes’",
]

SPACES = [
    " leading", "trailing ", "  two", "a  b", "a   b", "   ", " ", "a \tb", "\t", "\n", "\n\n", "a\n", "\na",
    "a\n\nb", "a \n b", " \n", "\r\n", "a\r\nb", "\t\tx", "x\t", "\u00a0x", "a\u3000b", "x\u2028y", "x\u0085y",
    "a \u00a0b", "  \n  x", "x \n\n y", "\n x", " \nx", "\t x", "x  ", "x\n\n", " \t\n", "a\u2003b", "a \u2009b",
    "\x0b", "a\x0cb", "  ", "a\n \nb", "The end.\n\nChapter 2",
]

LATIN = [
    "café", "naïve", "Ångström", "façade", "Zoë", "crème brûlée", "Straße", "Łódź", "Øresund", "Dvořák",
    "Ærø", "œuvre", "İstanbul", "ﬁne", "Ｆｕｌｌｗｉｄｔｈ",
]

SCRIPTS = [
    "Καλημέρα κόσμε", "αβγ", "Привет мир", "Ёжик", "你好世界", "日本語のテキスト", "한국어", "مرحبا", "שלום",
    "नमस्ते", "สวัสดี", "ሰላም", "Ελληνικά!", "Москва-2024", "中文，标点。", "カタカナ", "ひらがな",
]

EMOJI = [
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "I ❤️ NY", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙", "𐍈", "a😀b", " 😀", "😀😀😀",
    "🎉 party", "x🙂", "🤖 AI", "𝄞 music", "🏳️\u200d🌈",
]

COMBINING = ["e\u0301", "a\u0308b", "Z\u0324\u0354\u0367\u0311\u0313", "n\u0303", "ñ", " e\u0301x", "\u0301", "x \u0301"]

MIXED = [
    "The quick brown fox jumps over the lazy dog.", "GPT-2 tokenizes text into 50,257 tokens!",
    "Dear Sir/Madam,", "Q: What's 2+2?\nA: 4", "I said \"no\".", "tab\tseparated\tvalues", "snake_case_name",
    "camelCaseName", "ALL CAPS TEXT", "MiXeD cAsE", "x = y + 1;", "if (a && b) { c(); }", "<div class=\"x\">",
    "Ms. Smith's cat", "He's 6'2\"", "The '90s", "50/50", "A.I.", "don't-stop", "re-entry",
    "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis", "supercalifragilistic",
    "a", "I", " a", "ab", "?", "!", ".", ",", " ,", "zzz", "qwertyuiop", "Hello\tworld\n",
    "naïve café at 5pm", "Привет, world!", "日本 and 中国", "emoji 🎉 and ünïcödé", "x" * 10,
    "Tuesday Wednesday Thursday", "reinjury funology reinjury",
]


def long_words(M: int) -> list[str]:
    """Pre-tokens of exactly M UTF-8 bytes (fine) and of M + 1 (over the limit)."""
    return [
        "a" * M, " " + "b" * (M - 1), "é" * (M // 2), "x" * (M + 1), "é" * (M // 2) + "e", "-" * M,
        "😀" * (M // 4) if M % 4 == 0 else "😀" * (M // 4) + "a" * (M % 4),
    ]


CORPUS: list[str] = [""] + PAPER + CONTRACTIONS + NUMBERS + PUNCTUATION + SPACES + LATIN + SCRIPTS + EMOJI \
    + COMBINING + MIXED

# a representative few for the slow pure-Python engine (its workbook has tiny limits and is built with "it's ok"):
# a whitespace run before a word and a final newline, the empty prompt (with BOS), 2- and 4-byte characters,
# a capitalised non-contraction with a number and punctuation, Greek and CJK letters, tabs, a contraction + a run
SUBSET = ["a  b\n", "", "é😀 x", "I'M 42!", "αβ 中文", "x\t\ty ", "don't?!"]

assert len(CORPUS) >= 200, len(CORPUS)
assert len(set(CORPUS)) == len(CORPUS), [s for s in CORPUS if CORPUS.count(s) > 1]
