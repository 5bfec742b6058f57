"""Quantization-aware training (``compress/qat.py``) on real torch models: batch norms fold
into their convolutions without changing the function, QAT fine-tunes a copy (never the
student it was given) through torchao's PT2E QAT graph, epochs that do not fit the time
left are shortened to the batches that do, and a budget too short for the shortest epoch
worth running skips it with a reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compress import qat as qat_module
from compress.errors import CompressError
from compress.evaluation import top1_accuracy
from compress.qat import Limited, epoch_plan, fold_batch_norms, qat_finetune
from compress.recipe import DistillConfig, QatConfig, Recipe
from compress.techniques import StudentData, Students
from tests.compress.tiny import TinyNet, fit_tiny_tensors, tiny_tensors


class SharedConv(nn.Module):
    """conv -> bn (foldable), and a conv whose output feeds a bn AND an add (not foldable)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)
        self.b, self.bn2 = nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.b(torch.relu(self.bn(self.a(x))))
        return self.fc((self.bn2(z) + z).mean((2, 3)))


def test_batch_norms_fold_into_their_convolutions_without_changing_the_function():
    torch.manual_seed(0)
    model = SharedConv()
    for bn in (model.bn, model.bn2):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(3, 1, 9, 9)
    before = model(x)
    assert fold_batch_norms(model, x[:1]) == [("a", "bn")]
    assert isinstance(model.bn, nn.Identity) and isinstance(model.bn2, nn.BatchNorm2d)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny():
    x, y = tiny_tensors(256, 1)
    train = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    return fit_tiny_tensors(TinyNet(), 0, 60, lr=0.01).eval(), train, tiny_tensors(100, 2)


def test_qat_fine_tunes_a_float_copy_through_the_pt2e_qat_graph(tiny):
    model, train, validation = tiny
    original = {k: v.clone() for k, v in model.state_dict().items()}
    trained, summary, _ = qat_finetune(model, model, validation[0][:1], train, validation,
                                    top1_accuracy, QatConfig(epochs=2), DistillConfig())
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())
    assert summary["folded_batch_norms"] == ["stem.1", "dw.1", "pw.1"]
    assert [h["epoch"] for h in summary["history"]] == [0, 1, 2]  # 0: before any step
    assert summary["epochs_run"] == 2 and summary["epoch_estimate_s"] > 0
    assert isinstance(trained.stem[1], nn.Identity)  # plain float modules, any exporter
    same = all(torch.equal(a, b) for a, b in zip(trained.fc.parameters(),
                                                   model.fc.parameters(), strict=True))
    assert same == (summary["best_epoch"] == 0)  # the best epoch's weights, as distillation
    assert trained(validation[0]).shape == model(validation[0]).shape


def test_epochs_are_shortened_to_fit_and_skipped_below_the_shortest_worth_running():
    cfg = QatConfig(epochs=3, min_epoch_fraction=0.25)
    assert epoch_plan(0.5, 100, cfg, None) == (100, "")  # no limit: whole epochs
    assert epoch_plan(0.5, 100, cfg, 1000.0) == (100, "")  # 150 s of steps fit in 800
    batches, why = epoch_plan(0.5, 100, cfg, 100.0)  # 80 s of steps: 53 batches an epoch
    assert batches == 53 and why == "epochs shortened to 53 of 100 batches (53%) to fit " \
        "the 100 s left"
    with pytest.raises(CompressError, match=r"3 QAT epoch\(s\) of at least 25% of the "
                       r"training set take about 38 s, more than the 20 s left"):
        epoch_plan(0.5, 100, cfg, 20.0)  # 10 batches an epoch fit: under 25


def test_a_short_epoch_takes_other_batches_of_a_shuffling_loader_each_pass():
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.arange(40.0)), batch_size=4, shuffle=True)
    short = Limited(loader, 3)
    first, second = (torch.cat([b[0] for b in short]) for _ in range(2))
    assert len(short) == 3 and first.shape == second.shape == (12,)
    assert not torch.equal(first, second)


def test_qat_runs_short_epochs_when_whole_ones_do_not_fit(tiny, monkeypatch):
    model, train, validation = tiny  # 4 batches an epoch
    monkeypatch.setattr(qat_module, "batch_seconds", lambda *a: 10.0)  # 80 s for 2 epochs
    _, summary, _ = qat_finetune(model, model, validation[0][:1], train, validation,
                              top1_accuracy, QatConfig(epochs=2), DistillConfig(),
                              time_left=lambda: 50.0)  # 40 s of steps: 2 batches an epoch
    assert summary["batches_per_epoch"] == 2 and summary["training_batches"] == 4
    assert summary["shortened"].startswith("epochs shortened to 2 of 4 batches (50%)")
    assert summary["epochs_run"] == 2


def test_qat_is_skipped_when_the_shortest_epoch_does_not_fit(tiny):
    model, train, validation = tiny
    with pytest.raises(CompressError, match=r"QAT epoch.* take about"):
        qat_finetune(model, model, validation[0][:1], train, validation, top1_accuracy,
                     QatConfig(), DistillConfig(), time_left=lambda: 0.0)


def test_students_make_the_qat_variant_once_and_remember_a_failure(tiny):
    model, train, validation = tiny
    data = StudentData(teacher=model, example=validation[0][:1], train=train,
                       validation=validation, metric=top1_accuracy)
    students = Students(Recipe.from_dict({"quantize": {"qat": {"epochs": 1}}}), data)
    qat = students.variant(0.0, "qat")
    assert qat.key == "r0-qat" and qat.parent == "r0" and "qat" in qat.steps
    assert students.variant(0.0, "qat") is qat and students.get(0.0, "qat") is qat
    assert [s.key for s in students.made()] == ["r0", "r0-qat"]
    other = Students(Recipe(), data)
    for _ in range(2):
        with pytest.raises(CompressError, match="QAT epoch"):
            other.variant(0.0, "qat", time_left=lambda: 0.0)


def test_validation_never_moves_the_fake_quantizers_ranges(tiny):
    from compress.evaluation import predict
    from compress.qat import prepare_qat

    model, train, validation = tiny
    prepared = prepare_qat(fold_and_copy(model, validation[0][:1]), validation[0][:4])
    prepared.train()
    for inputs, _ in train:  # learn ranges on training data
        prepared(inputs)
    ranges = {k: v.clone() for k, v in prepared.state_dict().items() if "activation" in k}
    assert ranges
    predict(prepared, validation[0] * 50.0)  # far outside the training ranges
    after = prepared.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in ranges.items())
    prepared.train()
    prepared(validation[0][:8] * 50.0)
    assert not all(torch.equal(v, prepared.state_dict()[k]) for k, v in ranges.items())


def fold_and_copy(model, example):
    import copy

    student = copy.deepcopy(model).eval()
    fold_batch_norms(student, example)
    return student
