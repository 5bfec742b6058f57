"""The samples exports folder is bounded by age and size, by the leader's retention job."""

from __future__ import annotations

import os

from cloud_sync.config import CloudConfig
from cloud_sync.samples_export import prune_exports
from cloud_sync.serve.jobs import housekeeping_jobs

DAY = 86400.0


def _file(folder, name: str, size: int, mtime: float):
    path = folder / name
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return path


def test_old_files_go_then_the_oldest_while_over_the_size(tmp_path):
    now = 100 * DAY
    old = _file(tmp_path, "trigger-1-samples.npz", 10, now - 40 * DAY)
    a = _file(tmp_path, "trigger-2-samples.npz", 100, now - 3 * DAY)
    b = _file(tmp_path, "trigger-3-samples.npz", 100, now - 2 * DAY)
    fresh = _file(tmp_path, "trigger-4-samples.npz", 500, now - 60)  # an action may read it
    assert prune_exports(tmp_path, 30 * DAY, 250, now) == 3
    assert not old.exists() and not a.exists() and not b.exists() and fresh.exists()
    assert prune_exports(tmp_path / "missing", 30 * DAY, 250, now) == 0


def test_the_leaders_retention_job_prunes_the_exports_folder(engine, tmp_path):
    cfg = CloudConfig.from_dict({"data_dir": str(tmp_path),
                                 "retention": {"exports_max_age_s": DAY}})
    (tmp_path / "exports").mkdir()
    stale = _file(tmp_path / "exports", "trigger-1-evidence.json", 10, 1000.0)
    [retention] = [job for _every, job, name in housekeeping_jobs(cfg) if name == "retention"]
    done = retention(engine, 1000.0 + 2 * DAY)
    assert done["export_files"] == 1 and not stale.exists()
