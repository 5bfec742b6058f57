"""Model runtimes, registered by format. Importing this registers the built-in ones."""

from edge_agent.runtimes import onnx, tflite  # noqa: F401
from edge_agent.runtimes.base import Session, load_session, register_runtime, registered_formats

__all__ = ["Session", "load_session", "register_runtime", "registered_formats"]
