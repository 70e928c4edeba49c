"""Host-side helpers shared by the rewards: cleaning and n-gram codes of token ids."""

import numpy as np

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3

# n-gram codes are base-`vocabulary_size` numbers whose digits are token ids
# >= 1, so distinct n-grams (of any order up to 4) get distinct int64 codes.
MAX_VOCABULARY_SIZE = 55108  # 55108**4 < 2**63 <= 55109**4


def check_vocabulary_size(vocabulary_size, max_order):
    if max_order < 1:
        raise ValueError(f"max_order must be >= 1, got {max_order}.")
    if int(vocabulary_size) < 2 or int(vocabulary_size) ** max_order >= 2**63:
        raise ValueError(
            f"vocabulary_size {vocabulary_size} cannot code {max_order}-grams exactly "
            f"in int64 (at most {MAX_VOCABULARY_SIZE} for 4-grams)."
        )


def clean_token_ids(token_ids, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID):
    """The word ids of one caption: up to its first `<eos>` or pad, without `<bos>`.

    Args:
        token_ids: sequence of int.
        pad_id: int.
        bos_id: int.
        eos_id: int.

    Returns:
        list of int.

    Example:

    >>> clean_token_ids([2, 7, 8, 3, 0, 9])
    [7, 8]
    """
    words = []
    for token in np.asarray(token_ids).reshape(-1).tolist():
        if token in (pad_id, eos_id):
            break
        if token != bos_id:
            words.append(int(token))
    return words


def reference_rows(clip_reference_ids, pad_id=PAD_ID):
    """The present reference rows of one clip: rows with any non-pad token."""
    rows = []
    for row in clip_reference_ids:
        row = np.asarray(row).reshape(-1)
        if row.size and np.any(row != pad_id):
            rows.append(row)
    return rows


def ngram_codes(words, vocabulary_size, max_order=4):
    """The int64 codes of all n-grams (orders 1..`max_order`) of a word-id list."""
    words = np.asarray(words, dtype=np.int64)
    codes = []
    for order in range(1, max_order + 1):
        if len(words) < order:
            break
        code = np.zeros(len(words) - order + 1, dtype=np.int64)
        for offset in range(order):
            code = code * vocabulary_size + words[offset : len(words) - order + 1 + offset]
        codes.append(code)
    return np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)


def ids_to_text(words, vocabulary=None):
    """Joins word ids into a caption: through `vocabulary`, else the ids themselves."""
    if vocabulary is None:
        return " ".join(str(word) for word in words)
    return " ".join(vocabulary[word] for word in words)
