"""edgekit's cloud side: store, registry, ingest, drift, triggers, rollouts, HTTP API.

One folder per job (see DESIGN.md, "The cloud side"). Importing this package loads
nothing heavy; SQLAlchemy and friends are imported by the modules that need them.
"""
