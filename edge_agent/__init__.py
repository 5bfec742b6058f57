"""edgekit's on-device side: runs a signed bundle, reports telemetry, updates safely.

Imports only the stdlib, numpy, paho-mqtt, cryptography and the model runtimes;
never torch or the build/cloud packages. Valid Python 3.9.
"""

__version__ = "0.1.0"
