"""The digits retraining pipeline's own steps: versions, labelling the collected samples,
the splits (gate held out of training) and the --data function."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgekit.demo.stream import input_key
from examples.digits.augment import augment
from examples.digits.retrain import (
    RetrainConfig,
    labelled_samples,
    make_splits,
    next_version,
)


def test_next_version():
    assert next_version("1") == "2" and next_version("1.9") == "1.10"


def test_collected_samples_are_labelled_by_their_bytes(tmp_path):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(5, 1, 1, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "samples.npz", inputs=inputs)
    (tmp_path / "labels.json").write_text(json.dumps({input_key(inputs[1]): 3,
                                                     input_key(inputs[4]): 8}))
    x, y, counts = labelled_samples(tmp_path / "samples.npz", tmp_path / "labels.json")
    assert counts == {"collected": 5, "labelled": 2}
    assert y.tolist() == [3, 8] and x.shape == (2, 1, 32, 32)
    assert torch.equal(x[0], torch.from_numpy(inputs[1].reshape(1, 32, 32)))
    assert labelled_samples(None, tmp_path / "labels.json")[2] == {"collected": 0,
                                                                   "labelled": 0}


def test_splits_hold_the_gate_out_of_training(tmp_path):
    cfg = RetrainConfig(labels=tmp_path / "l", out=tmp_path, key=tmp_path / "k", api="http://x",
                        token_file=tmp_path / "t", fleet="f", profiles=["x86-64"])
    extra = (torch.zeros(2, 1, 32, 32), torch.tensor([1, 2]))
    parts = make_splits(cfg, extra)
    train_x = parts["train"][0]
    gate_x = parts["test"][0]
    train_keys = {input_key(x.numpy()) for x in train_x}
    assert not train_keys & {input_key(x.numpy()) for x in gate_x}
    n_aug = 1 + len(cfg.augment)
    assert len(parts["test"][1]) % n_aug == 0 and len(parts["validation"][1]) % n_aug == 0
    assert (parts["train"][1][-2 * cfg.sample_weight:] != 0).all()  # the samples, repeated


def test_augment_rejects_unknown_names():
    x, y = torch.zeros(2, 1, 32, 32), torch.tensor([0, 1])
    ax, ay = augment(x, y, ["polarity", "noise", "rotate"])
    assert ax.shape[0] == 8 and ay.tolist() == [0, 1] * 4
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        augment(x, y, ["blur"])
