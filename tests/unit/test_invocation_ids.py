"""Invocation ids: random version 4 UUID strings (``App._build_record``)."""

from __future__ import annotations

import uuid

from taskgate.ids import new_invocation_id


def test_ids_are_canonical_version_4_uuids() -> None:
    ids = [new_invocation_id() for _ in range(2000)]
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case, hyphenated: what str(uuid.uuid4()) gives
    assert len(set(ids)) == len(ids)


def test_every_random_digit_varies() -> None:
    # 122 random bits: every hex digit but the version's takes several values, and the
    # variant digit all four of 8, 9, a, b.
    ids = [new_invocation_id().replace("-", "") for _ in range(2000)]
    for position in range(32):
        seen = {text[position] for text in ids}
        if position == 12:
            assert seen == {"4"}
        elif position == 16:
            assert seen == set("89ab")
        else:
            assert len(seen) == 16
