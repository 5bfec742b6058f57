"""What a model computes, on the device side (numpy only, Python 3.9).

- ``layouts``: detection output layouts, each data plus one decode function.
- ``detection``: post-processing (decode, per-class NMS), detections, and the parity rule
  that matches two models' detections.
- ``stats``: the histograms of detections that the build records as reference and the
  device reports, computed by the same functions on both sides.
- ``plugin``: the device-side task plug-ins (registry by task kind): ``classify``,
  ``detect``, ``generic``; what ``Agent.predict`` answers, the telemetry output block
  (``windows``), the golden verdict.
- ``options``: per-request options (threshold overrides, ``image_size``, ``raw``).
- ``geometry``: boxes back in the caller's pixels (resize / letterbox undone).
"""
