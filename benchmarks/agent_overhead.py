"""Agent overhead vs the bare runtime: a tiny classifier, MobileNetV2-size, and a detector.

Measured in one run, interleaved, on the same ONNX file and thread count:
per-inference overhead (Python API and HTTP), RSS over the bare runtime, cold
start to first inference, and telemetry CPU cost at 100 inferences/s.

The detector (``detector-640``: 3 x 640 x 640 in, a YOLOv8n-shaped ``[1, 84, 8400]``
out, a few light convolutions) is measured against the bare runtime **plus the same
post-processing** (``edge_agent.tasks.detection.postprocess`` at the manifest's
thresholds), so its overhead is what the agent adds around decode + NMS: input checks,
telemetry counting (the detection block), the answer's JSON rows.

The bundles carry reference statistics (``bundle pack --reference-data``), so the
agent does everything it does in the field, input histograms included. The bare
baseline runs on the agent's own ONNX Runtime session object: two sessions of the
same file differ by several percent from each other on this host, which would
drown a 2 % target.

    .venv/bin/python benchmarks/agent_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import write_section  # noqa: E402

THREADS = 2  # the x86-64 profile's thread count


DETECTOR = "detector-640"
DETECTOR_RATE = 20.0  # inferences/s of the detector's telemetry cost (it runs ~15-25 ms)


def export_models(folder: Path) -> dict[str, Path]:
    """tiny: flatten+gemm+softmax on 1x8x8; mnv2: MobileNetV2 (width 1.0) on 1x224x224;
    detector-640: a light detector with YOLOv8n's output layout."""
    import torch

    from examples.digits.models import MobileNetV2
    from tests.models import make_tiny_onnx

    tiny = make_tiny_onnx(folder / "tiny.onnx")
    model = MobileNetV2(num_classes=1000, width=1.0).eval()
    mnv2 = folder / "mnv2.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 224, 224),), str(mnv2), dynamo=False,
                      input_names=["image"], output_names=["logits"], opset_version=17)
    detector = folder / "detector-640.onnx"
    torch.manual_seed(0)
    torch.onnx.export(_yolo_shaped().eval(), (torch.zeros(1, 3, 640, 640),), str(detector),
                      dynamo=False, input_names=["images"], output_names=["output0"],
                      opset_version=17)
    return {"tiny": tiny, "mobilenetv2-224": mnv2, DETECTOR: detector}


def _yolo_shaped():
    """3 x 640 x 640 -> [1, 84, 8400] (strides 8, 16, 32; boxes decoded in the graph, class
    scores through a sigmoid biased low, so most anchors score near 0, as a real one's)."""
    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.SiLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.SiLU())
            self.down = nn.ModuleList([nn.Identity(), nn.AvgPool2d(2), nn.AvgPool2d(4)])
            self.box, self.cls = nn.Conv2d(32, 4, 1), nn.Conv2d(32, 80, 1)
            centres = []
            for grid, stride in ((80, 8), (40, 16), (20, 32)):
                ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
                centres.append((torch.stack([xs, ys]).reshape(2, -1).float() + 0.5) * stride)
            self.register_buffer("centres", torch.cat(centres, 1)[None])
            with torch.no_grad():
                self.cls.bias.fill_(-0.16)  # with the x40 below: ~50 anchors over 0.25

        def forward(self, x):
            f = self.stem(x)
            feats = [down(f) for down in self.down]
            box = torch.cat([self.box(g).flatten(2) for g in feats], 2)
            cls = torch.cat([self.cls(g).flatten(2) for g in feats], 2)
            xy = self.centres + torch.tanh(box[:, :2]) * 16
            wh = torch.sigmoid(box[:, 2:]) * 256
            return torch.cat([xy, wh, torch.sigmoid(cls * 40)], 1)

    return Head()


def pack(model: Path, folder: Path, key: Path) -> Path:
    """A signed bundle with reference statistics from uniform [0, 1] inputs (32; 8 for
    the detector, which is packed with its task: yolov8 layout, the default thresholds)."""
    import onnxruntime as ort

    from export.pack import PackRequest, TaskOptions, pack_model
    from hardware_profiles import get_profile

    shape = [1 if not isinstance(d, int) else d
             for d in ort.InferenceSession(str(model)).get_inputs()[0].shape]
    detector = model.stem == DETECTOR
    reference = np.random.default_rng(1).uniform(0, 1, [8 if detector else 32, *shape[1:]])
    task = TaskOptions(kind="detection", layout="yolov8") if detector else TaskOptions()
    out = folder / f"{model.stem}.ekb"
    pack_model(PackRequest(model_file=model, profile=get_profile("x86-64"), name=model.stem,
                           version="1", key_file=key, out=out, task=task,
                           reference_data=reference.astype(np.float32)))
    return out


def post_processing(agent):
    """The post-processing the agent runs after the model (detectors), for the baseline."""
    from edge_agent.tasks.detection import postprocess

    spec = agent.active.model.manifest.task.detection
    if spec is None:
        return lambda outputs: None
    return lambda outputs: postprocess(outputs, spec)


def agent_cfg(bundle: Path, state: Path, pub: Path, **over):
    from edge_agent.config import AgentConfig

    doc = {"device_id": "bench", "fleet": "bench", "state_dir": str(state), "pubkeys": [str(pub)],
           "bundle": str(bundle), "telemetry_interval_s": 3600.0}
    doc.update(over)
    return AgentConfig.from_dict(doc)


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e6)
    return out


def overhead(name: str, model: Path, bundle: Path, state: Path, pub: Path, rounds: int,
             per_round: int) -> dict:
    """Median µs per inference: bare session, Agent.predict, HTTP POST .npy (interleaved)."""
    from edge_agent.agent import Agent

    agent = Agent(agent_cfg(bundle, state, pub, http="127.0.0.1:0"))
    agent.start()
    sess = agent.active.model.session._sess  # the agent's own ONNX Runtime session
    assert sess.get_session_options().intra_op_num_threads == THREADS
    feed_name = sess.get_inputs()[0].name
    shape = [1 if not isinstance(d, int) else d for d in sess.get_inputs()[0].shape]
    x = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    port = agent.http.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    buf = io.BytesIO()
    np.save(buf, x)
    body = buf.getvalue()
    post = post_processing(agent)
    # a detector's answer is its detections (JSON); a classifier's outputs come as .npy
    accept = "application/json" if name == DETECTOR else "application/x-npy"

    def via_http() -> None:
        conn.request("POST", "/v1/predict", body, {"Content-Type": "application/x-npy",
                                                   "Accept": accept})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200

    def http_floor() -> None:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        resp.read()

    def bare() -> None:
        post(sess.run(None, {feed_name: x}))

    def api() -> None:
        agent.predict(x)

    for _ in range(3):  # warm-up
        bare(), api(), via_http(), http_floor()
    # every call is timed right next to a bare call, so load on this shared host hits
    # both alike; the overhead is the median of the paired differences and ratios
    pairs: dict[str, list[tuple[float, float]]] = {"api": [], "http": []}
    floor = []
    for _ in range(rounds):
        for _ in range(per_round):
            pairs["api"].append((timed(bare, 1)[0], timed(api, 1)[0]))
            pairs["http"].append((timed(bare, 1)[0], timed(via_http, 1)[0]))
        floor += timed(http_floor, per_round // 4 or 1)
    conn.close()
    agent.stop()
    row = {"model": name, "bare_us": statistics.median(b for b, _ in pairs["api"]),
           "http_floor_us": statistics.median(floor)}
    for kind, got in pairs.items():
        row[f"{kind}_us"] = statistics.median(t for _, t in got)
        row[f"{kind}_overhead_us"] = statistics.median(t - b for b, t in got)
        row[f"{kind}_overhead_pct"] = 100 * (statistics.median(t / b for b, t in got) - 1)
    return row


CHILD_BARE = """
import sys, time, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = {threads}
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.zeros([1 if not isinstance(d, int) else d for d in i.shape], np.float32)
for _ in range(5):  # steady state, as the agent below
    s.run(None, {{i.name: x}})
print(int(open("/proc/self/statm").read().split()[1]) * 4096)
"""

CHILD_AGENT = """
import sys, time
t0 = time.perf_counter()
import numpy as np
from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
t_import = time.perf_counter()
cfg = AgentConfig.from_dict(dict(device_id="b", fleet="b", state_dir=sys.argv[2],
                                 pubkeys=[sys.argv[3]], bundle=sys.argv[1]))
agent = Agent(cfg)
spec = agent.active.model.manifest.inputs[0]
x = np.zeros([1 if d is None else d for d in spec.shape], np.float32)
agent.predict(x)
t_first = time.perf_counter()
for _ in range(4):
    agent.predict(x)
print(int(open("/proc/self/statm").read().split()[1]) * 4096, t_import - t0, t_first - t_import)
"""


def child(code: str, *args: str) -> tuple[list[str], float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env=env, check=True, timeout=300).stdout.split()
    return out, time.perf_counter() - start


def memory_and_cold_start(model: Path, bundle: Path, work: Path, pub: Path, reps: int) -> dict:
    """RSS of bare runtime+model vs agent+model; wall time from process start to first result."""
    rss_bare, rss_agent, cold, in_proc = [], [], [], []
    for i in range(reps):
        out, _ = child(CHILD_BARE.format(threads=THREADS), str(model))
        rss_bare.append(int(out[0]))
        state = work / f"cold-{model.stem}-{i}"
        out, wall = child(CHILD_AGENT, str(bundle), str(state), str(pub))
        rss_agent.append(int(out[0]))
        cold.append(wall)
        in_proc.append(float(out[2]))
    return {"rss_bare_mb": statistics.median(rss_bare) / 1e6,
            "rss_agent_mb": statistics.median(rss_agent) / 1e6,
            "rss_extra_mb": (statistics.median(rss_agent) - statistics.median(rss_bare)) / 1e6,
            "cold_start_s": statistics.median(cold),
            "agent_to_first_inference_s": statistics.median(in_proc)}


def telemetry_cost(bundle: Path, state: Path, pub: Path, seconds: float,
                   rate: float = 100.0) -> dict:
    """Extra CPU (% of one core) of metrics, sampling and telemetry at ``rate`` inferences/s
    (over the bare runtime plus the same post-processing, for a detector)."""
    from edge_agent.agent import Agent

    agent = Agent(agent_cfg(bundle, state, pub, telemetry_interval_s=1.0))
    agent.start()
    session = agent.active.model.session
    post = post_processing(agent)
    spec = agent.active.model.manifest.inputs[0]
    x = np.random.default_rng(0).standard_normal([1 if d is None else d for d in spec.shape])
    x = x.astype(np.float32)

    def paced(fn) -> float:
        cpu0, next_t = time.process_time(), time.perf_counter()
        end = next_t + seconds
        while next_t < end:
            fn()
            next_t += 1.0 / rate
            time.sleep(max(0.0, next_t - time.perf_counter()))
        return time.process_time() - cpu0

    bare_cpu = paced(lambda: post(session.run([x])))
    agent_cpu = paced(lambda: agent.predict(x))
    agent.stop()
    return {"bare_cpu_pct": 100 * bare_cpu / seconds, "agent_cpu_pct": 100 * agent_cpu / seconds,
            "telemetry_cost_pct": 100 * (agent_cpu - bare_cpu) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    rounds, per_round, reps, tel_s = (3, 50, 2, 3.0) if args.quick else (10, 200, 5, 10.0)
    from edge_agent.bundle import generate_keypair

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key, pub = generate_keypair(work / "keys")
        models = export_models(work)
        bundles = {name: pack(path, work, key) for name, path in models.items()}
        rows = [overhead(n, models[n], bundles[n], work / f"s-{n}", pub, rounds, per_round)
                for n in models]
        mem = {n: memory_and_cold_start(models[n], bundles[n], work, pub, reps) for n in models}
        tele = telemetry_cost(bundles["tiny"], work / "tele", pub, tel_s)
        tele_det = telemetry_cost(bundles[DETECTOR], work / "tele-det", pub, tel_s,
                                  rate=DETECTOR_RATE)
    report(rows, mem, tele, tele_det)


def report(rows: list[dict], mem: dict, tele: dict, tele_det: dict) -> None:
    lines = ["## Agent overhead vs bare ONNX Runtime", "",
             f"ONNX Runtime CPU, {THREADS} threads (x86-64 profile), batch 1, medians; "
             "interleaved rounds in one run, the bare runtime timed on the agent's own session; "
             "bundles with reference statistics (input histograms on). Targets: Python API "
             "overhead ≤ 2 % (MobileNetV2-224) and ≤ 30 µs (tiny); RSS ≤ +20 MB; cold start "
             "≤ 1 s; telemetry ≤ 2 % of a core at 100 inf/s. The detector's baseline is the "
             "bare runtime plus the same post-processing (decode + NMS at the manifest's "
             "thresholds); it is held to the classifier's limits (≤ 2 % or ≤ 30 µs, "
             "whichever is larger).", "",
             "HTTP: keep-alive connection, .npy request and response "
             "(`Accept: application/x-npy`; the detector answers its detections as JSON); "
             "the floor is `GET /healthz` on the same "
             "connection (loopback round trip + stdlib HTTP parsing, no model).", "",
             "| model | bare µs | Python API µs | overhead | HTTP µs | overhead | HTTP floor µs |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['bare_us']:.1f} | {r['api_us']:.1f} | "
                     f"+{r['api_overhead_us']:.1f} µs ({r['api_overhead_pct']:.1f} %) | "
                     f"{r['http_us']:.1f} | +{r['http_overhead_us']:.1f} µs "
                     f"({r['http_overhead_pct']:.1f} %) | {r['http_floor_us']:.0f} |")
    lines += ["", "| model | RSS bare runtime + model | RSS agent + model | extra | cold start "
              "(process start → first inference) | Agent() → first inference |",
              "|---|---|---|---|---|---|"]
    for name, m in mem.items():
        lines.append(f"| {name} | {m['rss_bare_mb']:.1f} MB | {m['rss_agent_mb']:.1f} MB | "
                     f"+{m['rss_extra_mb']:.1f} MB | {m['cold_start_s']:.2f} s | "
                     f"{m['agent_to_first_inference_s'] * 1000:.0f} ms |")
    lines += ["", f"Telemetry at 100 inferences/s (tiny model, 1 s telemetry interval): bare "
              f"{tele['bare_cpu_pct']:.2f} % of a core, agent {tele['agent_cpu_pct']:.2f} % → "
              f"cost **{tele['telemetry_cost_pct']:.2f} %** of a core. The detector at "
              f"{DETECTOR_RATE:.0f} inferences/s: bare + post-processing "
              f"{tele_det['bare_cpu_pct']:.2f} %, agent "
              f"{tele_det['agent_cpu_pct']:.2f} % → cost **{tele_det['telemetry_cost_pct']:.2f} "
              "%** of a core."]
    det = next(r for r in rows if r["model"] == DETECTOR)
    limit_us = max(30.0, 0.02 * det["bare_us"])
    verdict = "within" if det["api_overhead_us"] <= limit_us else "over"
    lines += ["", f"Detector: the agent adds {det['api_overhead_us']:.1f} µs "
              f"({det['api_overhead_pct']:.1f} %) to the bare runtime + post-processing "
              f"({det['bare_us']:.0f} µs): {verdict} the classifier's limit "
              f"(≤ 2 % or ≤ 30 µs: {limit_us:.0f} µs here)."]
    big = next(r for r in rows if r["model"] == "mobilenetv2-224")
    lines += ["", "Reading: a keep-alive `GET /healthz` alone (loopback round trip and stdlib "
              "HTTP parsing, no model) costs the HTTP floor above, so the HTTP path cannot "
              "meet a 100 µs budget on a tiny model; on the large model the HTTP overhead "
              f"(+{big['http_overhead_pct']:.1f} %) is mostly moving the .npy input over "
              "loopback while the client, the server thread and ONNX Runtime's spinning "
              "intra-op threads share this host's cores. Turning spinning off "
              "(`session.intra_op.allow_spinning=0`) frees them but cost about 5 % per "
              "inference here, so the agent keeps ONNX Runtime's default."]
    text = "\n".join(lines)
    print(text)
    print(json.dumps({"rows": rows, "memory": mem, "telemetry": tele,
                      "telemetry_detector": tele_det}, indent=1))
    write_section("agent-overhead", text)


if __name__ == "__main__":
    main()
