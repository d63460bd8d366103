"""Invocation ids: 21 random letters and digits (``App._build_record``)."""

from __future__ import annotations

import math
import string
from collections import Counter

from taskgate.ids import ID_LENGTH, new_invocation_id

ALPHANUMERIC = set(string.ascii_letters + string.digits)


def test_ids_are_21_letters_and_digits_and_distinct() -> None:
    ids = [new_invocation_id() for _ in range(5000)]
    for text in ids:
        assert len(text) == ID_LENGTH == 21
        assert set(text) <= ALPHANUMERIC  # never "-", "+", "/" or "=": one word everywhere
    assert len(set(ids)) == len(ids)


def test_every_position_is_random() -> None:
    # 20,000 ids: at every position nearly all 62 symbols occur (a fixed or biased digit,
    # say a version nibble, would show as few), and no symbol takes more than a few times
    # its fair share (two of base64's 64 are folded onto letters: at most twice).
    ids = [new_invocation_id() for _ in range(20000)]
    for position in range(ID_LENGTH):
        counts = Counter(text[position] for text in ids)
        assert len(counts) == 62
        assert max(counts.values()) < 4 * len(ids) / 62
    entropy = -sum(
        n / len(ids) * math.log2(n / len(ids)) for n in Counter(text[0] for text in ids).values()
    )
    assert entropy > 5.8  # bits per character: 21 characters carry well over 120 bits
