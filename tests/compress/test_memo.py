"""compress/memo.py: a value is made once per key, and a failure is remembered and raised
again without making it a second time."""

from __future__ import annotations

import pytest

from compress.memo import made_once


def test_made_once_and_failures_are_remembered():
    calls, cache = [], {}

    def make(value):
        calls.append(value)
        if value is None:
            raise ValueError("no value")
        return value

    assert made_once(cache, "a", lambda: make(1), ValueError) == 1
    assert made_once(cache, "a", lambda: make(2), ValueError) == 1
    for _ in range(2):
        with pytest.raises(ValueError, match="no value"):
            made_once(cache, "b", lambda: make(None), ValueError)
    assert calls == [1, None]
    with pytest.raises(KeyError):  # other errors are not cached: they propagate
        made_once(cache, "c", lambda: {}["x"], ValueError)
    assert "c" not in cache
