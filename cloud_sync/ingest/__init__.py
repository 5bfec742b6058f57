"""Ingest: MQTT v5 shared-subscription workers that store device messages exactly once.

- ``classify``: one message -> a typed device message, or a quarantine reason.
- ``batch``: one batch -> rows, gaps, registry updates, quarantine, counters (one transaction).
- ``gaps``: per (device, incarnation, kind) seq heads and the gaps between them.
- ``mqtt``: the worker's paho client (persistent session, manual acks, SUBACK checked).
- ``worker``: batching by size or age, commit, then acknowledge; retries and bisection.
- ``python -m cloud_sync.ingest``: one worker process (``edgekit cloud serve`` runs N).
"""
