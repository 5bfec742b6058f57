"""A LiteRT file whose graph fixes its batch at 1 (a transformer's reshapes, as litert-torch
exports them): the agent's session answers a batch one sample at a time instead of failing
in XNNPACK's prepare, and keeps answering single samples. The file is exported with torch
here, so the device-only (Python 3.9, no torch) run skips it."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.runtimes.tflite import TfliteSession

torch = pytest.importorskip("torch", reason="the fixed-batch file is exported with torch")


def test_a_fixed_batch_file_answers_a_batch_one_sample_at_a_time(tmp_path):
    from export.registry import exporter_for
    from tests.compress.tiny_attention import TinyTransformer
    from tests.export.conftest import make_target

    torch.manual_seed(0)
    model = TinyTransformer().eval()
    x = torch.randn(5, 1, 16, 16)
    path = exporter_for("tflite").export(model, x[:1], make_target("tflite", "fp32"),
                                         tmp_path / "t.tflite")
    session = TfliteSession(path, {"threads": 1})
    with torch.no_grad():
        expected = model(x).numpy()
    [batch] = session.run([x.numpy()])
    np.testing.assert_allclose(batch, expected, atol=1e-4)
    [one] = session.run([x[:1].numpy()])
    np.testing.assert_allclose(one, expected[:1], atol=1e-4)
