"""``edgekit demo``: the whole loop on one machine (see ``edgekit.demo.run``)."""

from edgekit.demo.run import Demo, run_demo
from edgekit.demo.settings import DemoSettings, DeviceSpec, for_size

__all__ = ["Demo", "DemoSettings", "DeviceSpec", "for_size", "run_demo"]
