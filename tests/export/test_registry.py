"""Every shipped profile's every target has an exporter and a default quantizer, so a new
profile or target is covered the moment it is added."""

from __future__ import annotations

import pytest

from edge_agent.contracts.vocab import FORMATS, PRECISIONS
from export.registry import EXPORTERS, QUANTIZERS, exporter_for, method_names, quantizers_for
from hardware_profiles import load_profiles

PROFILE_TARGETS = [(name, i, t) for name, p in sorted(load_profiles().items())
                   for i, t in enumerate(p.targets)]


@pytest.mark.parametrize("name, index, target", PROFILE_TARGETS,
                         ids=[f"{n}-{i}-{t.format}-{t.precision}" for n, i, t in PROFILE_TARGETS])
def test_every_profile_target_can_be_built(name, index, target):
    assert exporter_for(target.format).format == target.format
    defaults = [q for q in quantizers_for(target.format, target.precision) if q.default]
    assert defaults, f"{name} target {index} has no default quantizer"


def test_registries_list_the_builtins():
    exporter_for("onnx")  # loads the built-ins
    assert {"onnx", "tflite"} <= set(EXPORTERS.keys())
    assert {"float", "ort-static", "ort-dynamic", "ort-fp16", "inc", "litert-pt2e",
            "aeq-fp16", "ort-peer-default", "litert-peer-default"} <= set(method_names())
    for (fmt, precision, name), q in QUANTIZERS.items():
        assert (q.format, q.precision, q.name) == (fmt, precision, name) and q.summary


def test_opt_in_methods_are_not_default():
    opt_in = {q.name for _, q in QUANTIZERS.items() if not q.default}
    assert opt_in == {"inc", "ort-peer-default", "litert-peer-default"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_shared_format_has_an_exporter_and_every_precision_a_default_quantizer(fmt):
    assert exporter_for(fmt).format == fmt
    for precision in PRECISIONS:
        assert any(q.default for q in quantizers_for(fmt, precision)), (fmt, precision)


def test_registering_outside_the_shared_vocabularies_is_refused():
    from export.errors import ExportError
    from export.registry import Exporter, Quantizer, register_exporter, register_quantizer

    with pytest.raises(ExportError, match="format 'coreml' is not one of onnx, tflite"):
        register_exporter(Exporter("coreml", ".mlmodel", lambda *a: None))
    with pytest.raises(ExportError, match="precision 'int4' is not one of"):
        register_quantizer(Quantizer("x", "onnx", "int4", lambda *a: None))
