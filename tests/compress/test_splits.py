"""The honest gate's split: selection and gate are disjoint halves of validation (fixed seed),
or the user's test set gates; too little data is a one-line error."""

from __future__ import annotations

import pytest
import torch

from compress.errors import UserCodeError
from compress.splits import selection_and_gate
from compress.usercode import load_data


def test_selection_and_gate_are_disjoint_and_cover_validation():
    x = torch.arange(40, dtype=torch.float32).reshape(40, 1)
    y = torch.arange(40)
    split = selection_and_gate(x, y, seed=3)
    selection = set(split.selection.tolist())
    gate = set(split.gate_y.tolist())
    assert selection.isdisjoint(gate) and selection | gate == set(range(40))
    assert len(gate) == 20 and torch.equal(split.gate_x[:, 0].long(), split.gate_y)
    again = selection_and_gate(x, y, seed=3)
    assert torch.equal(again.selection, split.selection)  # the same every build
    assert "never used for selection" in split.describe()["gate_source"]


def test_a_test_set_is_the_gate_and_validation_selects():
    x, y = torch.zeros(10, 1), torch.arange(10)
    tx, ty = torch.ones(4, 1), torch.arange(4)
    split = selection_and_gate(x, y, (tx, ty))
    assert len(split.selection) == 10 and torch.equal(split.gate_y, ty)
    assert split.source == "the data function's test loader"


def test_too_little_validation_data_is_one_line():
    with pytest.raises(UserCodeError, match=r"needs at least 4 .* 'test' loader"):
        selection_and_gate(torch.zeros(3, 1), torch.arange(3))


def test_the_data_function_may_return_a_test_loader():
    data = load_data("tests/compress/tiny.py:tiny_data_with_test")
    assert data.test is not None and len(data.test.dataset) == 48
