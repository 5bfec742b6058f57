"""``edgekit cloud samples export --format coco`` (issue 19): a detector's samples, stored as
ingest stores them from 1.3 messages, become PNG images and a COCO JSON whose annotations
are the device's detections; pycocotools (what the COCO tooling is built on) and Pillow
read them back. The .npz export still works for detectors' samples (SQLite, PostgreSQL)."""

from __future__ import annotations

import base64
import json

import numpy as np
import sqlalchemy as sa
from typer.testing import CliRunner

from cloud_sync.samples_coco import as_image
from cloud_sync.sim.detection import DetectorWorld, draw_frames, sample_detections
from cloud_sync.store import open_store, sample_row, transaction
from cloud_sync.store.schema import samples
from edge_agent import protocol as p
from edge_agent.contracts import EncodedInput, ModelRef, Prediction
from edgekit.cli.main import app
from tests.cloud_sync.rollouts.test_detection_health import publish_detector

runner = CliRunner()
WORLD = DetectorWorld()


def _sample(seq: int, image: np.ndarray, detections=None, prediction=None) -> p.Sample:
    msg = p.Sample(device_id="cam-1", seq=seq, ts=1000.0 + seq, incarnation="inc1",
                   model=ModelRef(name="det", version="2"), reason="requested",
                   input=EncodedInput(dtype=str(image.dtype), shape=list(image.shape),
                                      data=base64.b64encode(image.tobytes()).decode()),
                   detections=detections, prediction=prediction)
    return p.Sample.from_json(msg.to_json())


def _store_samples(db_url: str) -> list[list]:
    rng = np.random.default_rng(4)
    frames = draw_frames(rng, WORLD, 3)
    engine = open_store(db_url)
    with transaction(engine) as conn:
        publish_detector(conn, "2", "ab" * 32)
        rows = [sample_row("f1", _sample(i + 1, rng.random((1, 3, 64, 64), np.float32),
                                         sample_detections(found)), 1000.0)
                for i, found in enumerate(frames)]
        rows.append(sample_row("f1", _sample(9, rng.random((1, 3, 64, 64), np.float32), []),
                               1000.0))
        conn.execute(sa.insert(samples), rows)
        stored = conn.execute(sa.select(samples.c.detections, samples.c.pred_class)
                              .order_by(samples.c.seq)).all()
    engine.dispose()
    assert [r.detections for r in stored] == [len(f) for f in frames] + [0]
    assert {r.pred_class for r in stored} == {None}
    return [sample_detections(f) for f in frames]


def test_coco_export_imports_with_the_devices_detections(db_url, tmp_path):
    from PIL import Image
    from pycocotools.coco import COCO

    sent = _store_samples(db_url)
    out = tmp_path / "coco"
    done = runner.invoke(app, ["cloud", "samples", "export", "--fleet", "f1", "--format", "coco",
                               "-o", str(out), "--db", db_url, "--json"])
    assert done.exit_code == 0, done.output
    meta = json.loads(done.stdout)
    assert meta["samples"] == 4 and meta["images"] == 4
    assert meta["annotations"] == sum(len(s) for s in sent)
    coco = COCO(str(out / "annotations" / "instances_default.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(WORLD.labels)
    first = coco.loadImgs(1)[0]
    assert first["file_name"] == "cam-1-inc1-1.png" and (first["width"], first["height"]) == \
        (64, 64)
    with Image.open(out / "images" / first["file_name"]) as img:
        assert img.size == (64, 64) and img.mode == "RGB"
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == len(sent[0])
    for ann, det in zip(anns, sent[0], strict=True):
        x1, y1, x2, y2 = det.box
        assert ann["bbox"] == [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
        assert ann["category_id"] == det.class_index + 1 and ann["score"] == det.score
    assert coco.getAnnIds(imgIds=[4]) == []  # a frame with no detection: an image to label


def test_npz_export_keeps_working_for_detector_samples(db_url, tmp_path):
    sent = _store_samples(db_url)

    def _sent_rows():
        return [[d.to_dict() for d in found] for found in sent] + [[]]

    out = tmp_path / "s.npz"
    done = runner.invoke(app, ["cloud", "samples", "export", "--fleet", "f1", "-o", str(out),
                               "--db", db_url])
    assert done.exit_code == 0, done.output
    z = np.load(out)
    assert z["inputs"].shape == (4, 1, 3, 64, 64) and set(z["predictions"]) == {-1}
    sent = _sent_rows()
    assert [json.loads(d) for d in z["detections"]] == sent


def test_an_unknown_format_is_a_one_line_error(db_url, tmp_path):
    done = runner.invoke(app, ["cloud", "samples", "export", "--fleet", "f1", "--format", "yolo",
                               "-o", str(tmp_path / "x"), "--db", db_url])
    assert done.exit_code != 0
    assert str(done.exception) == "samples export: unknown format 'yolo'; one of npz, coco"


def test_images_from_model_inputs():
    chw = np.zeros((1, 3, 4, 5), np.float32)
    chw[0, 0] = 1.0
    img = as_image(chw)
    assert img.shape == (4, 5, 3) and img[0, 0].tolist() == [255, 0, 0]
    assert as_image(np.full((1, 4, 4, 1), 7, np.uint8)).shape == (4, 4)
    stretched = as_image(np.array([[-2.0, 2.0], [0.0, 0.0]]))
    assert stretched.tolist() == [[0, 255], [128, 128]]


def test_a_non_image_input_is_a_one_line_error():
    import pytest

    from cloud_sync.errors import CloudError

    with pytest.raises(CloudError, match=r"shape \[1, 10\] is not an image.*--format npz"):
        as_image(np.zeros((1, 10), np.float32))


def test_classifier_samples_still_carry_their_prediction(db_url):
    engine = open_store(db_url)
    with transaction(engine) as conn:
        conn.execute(sa.insert(samples), [sample_row("f1", _sample(
            1, np.zeros((1, 3, 4, 4), np.float32),
            prediction=Prediction(class_index=3, confidence=0.4)), 1.0)])
        row = conn.execute(sa.select(samples.c.pred_class, samples.c.detections)).one()
    engine.dispose()
    assert (row.pred_class, row.detections) == (3, None)
