"""The shared vocabularies, defined once: model formats, precisions, tensor dtypes, MQTT QoS.

``hardware_profiles``, ``compress``, ``export``, the bundle manifest and the MQTT
link import these names; a test checks every format has a device runtime and
every precision a golden-check tolerance.
"""

from __future__ import annotations

FORMATS: tuple[str, ...] = ("onnx", "tflite")
"""Model file formats a bundle can carry (each has a runtime in ``edge_agent.runtimes``)."""

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int8-dynamic")
"""``int8`` is static (calibrated activations); ``int8-dynamic`` quantizes weights only."""

DTYPES: tuple[str, ...] = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32",
                           "int64", "bool")
"""Tensor element types of model inputs and outputs, by numpy name."""

DTYPE_SIZES: dict[str, int] = {"float32": 4, "float16": 2, "float64": 8, "int8": 1, "uint8": 1,
                               "int16": 2, "int32": 4, "int64": 8, "bool": 1}
"""Bytes per element of each dtype (numpy's itemsize), for checking encoded arrays."""

QOS = 1
"""MQTT QoS of every edgekit topic: at least once (the cloud deduplicates on seq)."""
