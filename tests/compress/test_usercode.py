"""The user's factory, weights and data function: bad input gives one clear line."""

from __future__ import annotations

import pickle

import pytest
import torch

from compress.errors import UserCodeError
from compress.usercode import build_model, load_data, load_object

TINY = "tests/compress/tiny.py"


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_file_and_module_specs_load():
    assert load_object(f"{TINY}:tiny_model", "--model").__name__ == "tiny_model"
    assert load_object("tests.compress.tiny:tiny_data", "--data").__name__ == "tiny_data"


@pytest.mark.parametrize("spec, expected", [
    ("tiny.py", "must look like FILE.py:NAME"),
    ("nope/missing.py:f", "does not exist"),
    (f"{TINY}:nothing_here", "has no 'nothing_here'"),
    ("no_such_module_xyz:f", "importing module no_such_module_xyz failed: ModuleNotFoundError"),
])
def test_bad_specs(spec, expected):
    with pytest.raises(UserCodeError) as info:
        load_object(spec, "--model")
    assert expected in one_line(info)


def test_import_error_in_user_file(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_real_package_qq\n")
    with pytest.raises(UserCodeError) as info:
        load_object(f"{bad}:f", "--model")
    assert "importing" in one_line(info) and "not_a_real_package_qq" in str(info.value)


def test_factory_that_fails():
    with pytest.raises(UserCodeError) as info:
        build_model(f"{TINY}:broken_factory")
    assert "raised ValueError: no such checkpoint format" in one_line(info)


def test_factory_returning_something_else():
    with pytest.raises(UserCodeError) as info:
        build_model(f"{TINY}:not_a_module")
    assert "returned dict, not a torch.nn.Module" in one_line(info)


def test_weights_round_trip(tmp_path, tiny_teacher):
    path = tmp_path / "w.pt"
    torch.save(tiny_teacher.state_dict(), path)
    model = build_model(f"{TINY}:tiny_model", path)
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(model(x), tiny_teacher(x))


def test_weights_that_do_not_fit(tmp_path):
    from tests.compress.tiny import TinyNet

    path = tmp_path / "w.pt"
    torch.save(TinyNet(width=8).state_dict(), path)
    with pytest.raises(UserCodeError) as info:
        build_model(f"{TINY}:tiny_model", path)
    assert "do not fit" in one_line(info) and "the model wants" in str(info.value)


def test_weights_with_missing_keys(tmp_path, tiny_teacher):
    state = dict(tiny_teacher.state_dict())
    state.pop("fc.weight")
    state["extra.bias"] = torch.zeros(1)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(UserCodeError) as info:
        build_model(f"{TINY}:tiny_model", path)
    assert "missing keys fc.weight" in one_line(info) and "unexpected keys extra.bias" in \
        str(info.value)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_weights_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"fc.weight": Evil()}))
    with pytest.raises(UserCodeError) as info:
        build_model(f"{TINY}:tiny_model", path)
    assert "never pickled objects" in one_line(info)
    assert "pwned" not in capsys.readouterr().out


def test_whole_module_pickle_is_refused(tmp_path, tiny_teacher):
    path = tmp_path / "module.pt"
    torch.save(tiny_teacher, path)
    with pytest.raises(UserCodeError, match="cannot be read as a state_dict"):
        build_model(f"{TINY}:tiny_model", path)


def test_good_data_function():
    data = load_data(f"{TINY}:tiny_data")
    assert data.labels == ["tl", "tr", "bl", "br"] and data.metric is None


@pytest.mark.parametrize("name, expected", [
    ("list_data", "returned list; expected a dict with train, calibration, validation"),
    ("wrong_shape_data", "'train' must yield (inputs, labels) pairs"),
])
def test_data_function_of_the_wrong_shape(name, expected):
    with pytest.raises(UserCodeError) as info:
        load_data(f"{TINY}:{name}")
    assert expected in one_line(info)


def test_data_dict_missing_a_loader(tmp_path):
    src = tmp_path / "d.py"
    src.write_text("from tests.compress.tiny import tiny_data\n"
                   "def data():\n    d = tiny_data()\n    del d['calibration']\n    return d\n")
    with pytest.raises(UserCodeError) as info:
        load_data(f"{src}:data")
    assert "missing calibration" in one_line(info)


def test_loaders_with_different_input_shapes(tmp_path):
    src = tmp_path / "d.py"
    src.write_text("import torch\nfrom torch.utils.data import DataLoader, TensorDataset\n"
                   "def data():\n"
                   "    a = DataLoader(TensorDataset(torch.zeros(4, 1, 16, 16), torch.zeros(4)))\n"
                   "    b = DataLoader(TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4)))\n"
                   "    return {'train': a, 'calibration': a, 'validation': b}\n")
    with pytest.raises(UserCodeError) as info:
        load_data(f"{src}:data")
    assert "input shapes differ" in one_line(info)
