"""Pure-Python caption tokenizer that mimics coco-caption's `PTBTokenizer`.

coco-caption runs Stanford CoreNLP 3.4.1's `PTBTokenizer -preserveLines
-lowerCase` over every caption and then drops the tokens in its punctuation
list. This module reproduces what that pipeline does to plain English captions
(words, numbers, contractions, hyphens, abbreviations, sentence punctuation,
quotes, brackets, non-ASCII letters) without Java. Exotic inputs (URLs, rare
clitics such as `y'all` or `rock'n'roll`, SGML) may tokenize differently.
"""

import re
import unicodedata

# coco-caption's list, compared after lower-casing exactly as coco-caption
# does: so "-LRB-" never matches and brackets survive as "-lrb-".
PUNCTUATION_TOKENS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!",
     ",", ":", "-", "--", "...", ";"]
)

# Words whose final period CoreNLP keeps (its abbreviation list, the part
# that shows up in captions).
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st jr sr vs etc inc ltd co corp no jan feb mar apr
    jun jul aug sep sept oct nov dec mt ft gen gov sen rep rev capt col lt sgt
    ave blvd dept est fig approx""".split()
)

_CHARACTER_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
    "\u201c": " ", "\u201d": " ", "\u201e": " ", "\u00ab": " ", "\u00bb": " ",
    "\u2026": " ... ", "\u2014": " -- ", "\u2013": " -- ", "\u2012": " -- ",
    "\u20ac": " $ ", "\u00a3": " # ", "\u00a5": " $ ",
    "(": " -lrb- ", ")": " -rrb- ", "[": " -lsb- ", "]": " -rsb- ",
    "{": " -lcb- ", "}": " -rcb- ",
    '"': " ", "`": " ",
}
for _symbol in "*+=|~^\\%$&":
    _CHARACTER_MAP[_symbol] = f" {_symbol} "
_TRANSLATION = str.maketrans(_CHARACTER_MAP)

_SPLIT_WORDS = {
    "cannot": ["can", "not"], "gonna": ["gon", "na"], "wanna": ["wan", "na"],
    "gotta": ["got", "ta"], "lemme": ["lem", "me"], "gimme": ["gim", "me"],
    "'tis": ["'t", "is"], "'twas": ["'t", "was"],
}
_NEGATION = re.compile(r"^(.+)(n't)$")
_CLITIC = re.compile(r"^(.+?)('s|'m|'re|'ve|'d|'ll)$")
_INNER_SEPARATOR = re.compile(r"(?<![0-9])[,;:]|[,;:](?![0-9])|;")
_TRAILING_MARKS = re.compile(r"[.?!]+$")
_MARK_RUNS = re.compile(r"\.+|[?!]+")
_ACRONYM = re.compile(r"^([^\W\d_]\.)+$")
_HASH_NUMBER = re.compile(r"#(?=[0-9])")
_APOSTROPHE_BETWEEN_DIGITS = re.compile(r"(?<=[0-9])'(?=[0-9])")


def _drop_unprintable(text):
    # CoreNLP deletes characters it cannot tokenize (emoji and other symbols).
    return "".join(
        character
        for character in text
        if unicodedata.category(character) not in ("So", "Cs", "Co", "Cn", "Cc")
        or character in "\t\n\r"
    )


def _split_clitics(word):
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    match = _NEGATION.match(word)
    if match and match.group(1) not in ("'",):
        return _split_clitics(match.group(1)) + ["n't"]
    match = _CLITIC.match(word)
    if match and match.group(1) not in ("'",):
        return [match.group(1), match.group(2)]
    return [word]


def _keeps_final_period(word):
    return word[:-1] in _ABBREVIATIONS or bool(_ACRONYM.match(word))


def _split_chunk(chunk):
    """Splits one whitespace-free chunk into PTB tokens."""
    leading, trailing = [], []
    while chunk.startswith("'") and not re.match(r"^'([0-9]+s?|n'|t(is|was))$", chunk):
        leading.append("'")
        chunk = chunk[1:]
    while chunk:
        if chunk.endswith("'") and chunk != "'n'":
            trailing.insert(0, "'")
            chunk = chunk[:-1]
            continue
        marks = _TRAILING_MARKS.search(chunk)
        if marks and not (marks.group() == "." and _keeps_final_period(chunk)):
            trailing[:0] = _MARK_RUNS.findall(marks.group())
            chunk = chunk[: marks.start()]
            continue
        if chunk[-1] in ",;:":
            trailing.insert(0, chunk[-1])
            chunk = chunk[:-1]
            continue
        break
    tokens = list(leading)
    if chunk:
        for piece in _INNER_SEPARATOR.split(chunk):
            if piece and piece.strip("-"):
                tokens.extend(_split_clitics(piece))
    return tokens + trailing


def tokenize_caption(caption):
    """Tokenizes one caption the way coco-caption's `PTBTokenizer` does.

    Lower-cases, splits punctuation and English clitics off words
    (`doesn't` → `does n't`), and drops coco-caption's punctuation tokens.

    Args:
        caption: str. A raw caption.

    Returns:
        str. The tokens joined by single spaces ("" when nothing is left).

    Example:

    >>> tokenize_caption("A man's dog doesn't run, it walks.")
    "a man 's dog does n't run it walks"
    """
    if not isinstance(caption, str):
        raise ValueError(f"A caption must be a str, got {type(caption).__name__}.")
    text = _drop_unprintable(caption.replace("\n", " "))
    text = text.lower().translate(_TRANSLATION)
    text = _HASH_NUMBER.sub(" # ", text)
    text = _APOSTROPHE_BETWEEN_DIGITS.sub(" ' ", text)
    tokens = []
    for chunk in text.split():
        tokens.extend(_split_chunk(chunk))
    return " ".join(
        token for token in tokens
        if token not in PUNCTUATION_TOKENS and not re.fullmatch(r"-+|\.+", token)
    )


def tokenize_captions(captions):
    """Tokenizes a `{clip_id: [captions]}` mapping with `tokenize_caption`.

    Args:
        captions: dict. `{clip_id: str}` or `{clip_id: list of str}`.

    Returns:
        dict. Same keys and shape, tokenized strings as values.

    Example:

    >>> tokenize_captions({"clip": ["A dog runs."]})
    {'clip': ['a dog runs']}
    """
    tokenized = {}
    for clip_id, value in captions.items():
        if isinstance(value, str):
            tokenized[clip_id] = tokenize_caption(value)
        else:
            tokenized[clip_id] = [tokenize_caption(caption) for caption in value]
    return tokenized
