"""--tolerance: absolute in metric units, or relative with a % sign."""

from __future__ import annotations

import pytest

from compress.errors import CompressError
from compress.tolerance import Tolerance


def test_absolute_tolerance():
    tol = Tolerance.parse("0.01")
    assert tol.allowed_drop(0.98) == pytest.approx(0.01) and not tol.relative


def test_relative_tolerance():
    tol = Tolerance.parse("2%")
    assert tol.relative and tol.allowed_drop(0.5) == pytest.approx(0.01)
    assert "2% of baseline" in tol.describe()


@pytest.mark.parametrize("text", ["abc", "-0.1", "%", "nan"])
def test_bad_tolerance_is_one_line(text):
    with pytest.raises(CompressError, match="--tolerance"):
        Tolerance.parse(text)
