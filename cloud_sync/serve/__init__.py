"""``cloud serve``: the supervisor of ingest workers, housekeeping jobs and the HTTP API.

- ``supervisor``: N ingest worker processes, restarted with backoff when one dies.
- ``jobs``: retention and device state from silence, run on the elected leader.
- ``runner``: ``serve(cfg, options)``, start to clean shutdown.
"""
