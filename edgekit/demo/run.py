"""The whole loop, stage by stage: train -> build -> fleet (broker with ACLs, cloud, agents)
-> a quiet baseline -> input shift on some devices -> one retraining trigger -> retrain,
rebuild, publish v2, canary rollout -> every device on v2 -> the task's figure of merit
(accuracy, mAP@0.5) recovers.

The stages are the same for every task; what differs (model, data, traffic, figure of
merit, retraining command, report sections) comes from the task's plug-in
(``edgekit.demo.tasks``, ``--task``).

Each stage checks its own outcome against what a user would expect and records its
figures; ``summary.json`` and ``report.html`` are written whatever happens, and every
process is stopped on the way out (Ctrl-C included).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from edgekit.cli.output import console
from edgekit.demo.fleet import DemoFleet
from edgekit.demo.settings import FLEET, DemoSettings
from edgekit.demo.stream import DeviceStream, Labels, Observation, mean_confidence
from edgekit.demo.tasks import task_for
from edgekit.demo.timeline import StageFailed, Timeline

TERMINAL = {"done", "rolled_back", "halted", "failed", "aborted"}


def project_root() -> Path:
    """The clone the demo runs from: its ``examples/`` folder is not an installed package."""
    import sys

    from edge_agent.errors import EdgekitError

    root = Path(__file__).resolve().parents[2]
    if not (root / "examples" / "digits" / "models.py").is_file():
        raise EdgekitError("the demo needs the examples/ folder: run it from a clone of "
                           "edgekit (make demo)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def wait_until(what, timeout: float, every: float = 1.0):
    """Poll ``what()`` until it returns something truthy, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    return None


class Demo:
    """One run of the demo; ``run()`` returns the process exit status."""

    def __init__(self, s: DemoSettings) -> None:
        self.s = s
        self.task = task_for(s.task)
        self.tl = Timeline()
        self.fleet: DemoFleet | None = None
        self.streams: dict[str, DeviceStream] = {}
        self.observations: list[Observation] = []
        self.obs_lock = threading.Lock()
        self.labels = Labels()
        self.stopping = threading.Event()
        self.facts: dict[str, Any] = {}  # what the report needs beyond the stages

    # -- stages --------------------------------------------------------------------------
    def keys(self) -> tuple[Path, Path]:
        from edge_agent.bundle import generate_keypair

        keys = self.s.out / "keys"
        key, pub = keys / "edgekit_ed25519.pem", keys / "edgekit_ed25519.pub.pem"
        if not key.exists():
            key, pub = generate_keypair(keys)
        return key, pub

    def train(self, fig: dict[str, Any]) -> Path:
        project_root()
        weights, line = self.task.train(self.s, fig)
        self.tl.log("train", f"{line}{' (cached)' if fig['cached'] else ''}")
        return weights

    def build(self, fig: dict[str, Any], weights: Path, key: Path) -> dict[str, Path]:
        root = project_root()
        from edgekit.cli.build import summary_table
        from export.build import BuildRequest, run_build

        spec = self.task.build_spec(self.s, root)
        self.tl.log("build", f"edgekit build for {', '.join(self.s.profiles)}")
        result = run_build(BuildRequest(
            model=spec.model, data=spec.data, recipe=spec.recipe, profiles=self.s.profiles,
            key_file=key, out_dir=self.s.out / "build", weights=weights,
            tolerance=spec.tolerance, name=self.task.model_name, version="1",
            time_budget_s=self.s.build_budget_s))
        console.print(summary_table(result.report))
        self.facts["build_report"] = result.report
        fig["profiles"] = {name: {k: p.get(k) for k in ("format", "precision", "metric",
                                                         "latency_ms", "speedup", "size_bytes")}
                           for name, p in result.report["profiles"].items()}
        fig["report"] = str(result.report_html)
        self.tl.log("build", f"3 signed bundles; build report {result.report_html}")
        return result.bundles

    def start_fleet(self, fig: dict[str, Any], bundles: dict[str, Path], key: Path,
                    pub: Path, weights: Path) -> DemoFleet:
        root = project_root()
        fleet = self.fleet = DemoFleet(self.s, pub, self.task)
        retrain_cfg = fleet.dir / "retrain.json"
        fleet.dir.mkdir(parents=True, exist_ok=True)
        fleet.write_cloud_config(retrain_cfg)
        retrain_cfg.write_text(json.dumps({
            "labels": str(fleet.dir / "labels.json"), "out": str(fleet.dir / "retrain"),
            "key": str(key.resolve()), "api": fleet.api, "token_file": str(fleet.token_file),
            "fleet": FLEET, "profiles": self.s.profiles,
            "time_budget_s": self.s.build_budget_s,
            "canary": "1", "bake_s": self.s.bake_s, "waves": "100",
            **self.task.retrain_settings(self.s, weights.resolve()),
            **self.s.retrain_extra}, indent=2))
        files = fleet.register()
        broker = fleet.start_broker(files)
        acl = "the cloud's generated passwords and ACLs" if fleet.broker else \
            f"your broker (load {fleet.dir / 'broker'} into it to enforce the ACLs)"
        self.tl.log("fleet", f"broker {broker}: {acl}")
        fleet.start_cloud()
        self.tl.log("fleet", f"edgekit cloud serve: API and dashboard at {fleet.api}/dashboard")
        for bundle in bundles.values():
            fleet.publish(bundle)
        self.tl.log("fleet", f"published v1 ({len(bundles)} bundles) to the cloud's registry")
        fleet.start_agents(bundles)
        devices = ", ".join(f"{d.device_id} ({d.profile})" for d in self.s.devices)
        self.tl.log("fleet", f"{len(self.s.devices)} agents running: {devices}")
        fig.update(broker=broker, api=fleet.api, dashboard=f"{fleet.api}/dashboard",
                   token_file=str(fleet.token_file),
                   devices=[f"{d.device_id} ({d.profile}{', shifted' if d.shifted else ''})"
                            for d in self.s.devices],
                   acl_enforced=fleet.broker is not None, root=str(root))
        return fleet

    def start_streams(self) -> None:
        pools = self.task.pools(self.s)
        for i, d in enumerate(self.s.devices):
            stream = DeviceStream(d, self.fleet.ports[d.device_id], self.task.ask, pools,
                                  self.labels, self.s.rate_hz, self.observations,
                                  self.obs_lock, "stream", seed=i)
            self.streams[d.device_id] = stream
            stream.start()
        threading.Thread(target=self._save_labels, name="labels", daemon=True).start()

    def _save_labels(self) -> None:
        """Keep the labelling stand-in's file current for the retraining command."""
        path = self.fleet.dir / "labels.json"
        while not self.stopping.wait(1.0):
            self.labels.save(path)

    def recent(self, since: float, devices: list[str] | None = None) -> list[Observation]:
        with self.obs_lock:
            return [o for o in self.observations if o.t >= since
                    and (devices is None or o.device in devices)]

    def triggers(self) -> list[dict[str, Any]]:
        return self.fleet.get(f"triggers?fleet={FLEET}")["items"]

    def baseline(self, fig: dict[str, Any]) -> None:
        metric = self.task.metric
        began = time.time()
        self.start_streams()
        self.tl.log("baseline", f"{len(self.streams)} devices {self.task.traffic} at "
                                f"{self.s.rate_hz:g}/s each; {self.s.baseline_s:g} s unshifted")
        time.sleep(self.s.baseline_s)
        for device, stream in self.streams.items():
            fig[device] = {metric: _r(self.task.score(self.recent(began, [device]))),
                           "errors": stream.errors}
        fig[f"{metric}_shifted"] = _r(self.task.score(self.recent(began, self.s.shifted)))
        fired = self.triggers()
        fig["triggers"] = len(fired)
        self.tl.log("baseline", f"{self.task.metric_label} " + ", ".join(
            f"{d} {fig[d][metric]}" for d in self.streams) + f"; triggers fired: {len(fired)}")
        if fired:
            raise StageFailed("a trigger fired on unshifted traffic (a false alarm)")

    def drift(self, fig: dict[str, Any]) -> dict[str, Any]:
        shifted = self.s.shifted
        for device in shifted:
            self.streams[device].shifted = True
        began = time.time()
        self.tl.log("drift", f"input shift '{self.s.shift}' on {', '.join(shifted)}", "shift")
        trigger = wait_until(lambda: (self.triggers() or [None])[0], self.s.trigger_timeout_s, 2)
        metric = self.task.metric
        fig[f"{metric}_shifted"] = _r(self.task.score(self.recent(began, shifted)))
        fig["confidence_shifted"] = _r(mean_confidence(self.recent(began, shifted)))
        if trigger is None:
            raise StageFailed(f"no retraining trigger within {self.s.trigger_timeout_s:g} s "
                              "of the shift")
        detail = self.fleet.get(f"triggers/{trigger['id']}")
        ev = detail["evidence"]
        fig.update(trigger=trigger["id"], seconds_to_trigger=round(time.time() - began, 1),
                   devices_affected=ev["devices_affected"], reason=ev["reason"],
                   samples_exported=detail.get("samples_count"))
        self.tl.log("drift", f"trigger {trigger['id']} fired: {ev['reason']}; devices "
                             f"{', '.join(ev['devices_affected'])}; {self.task.metric_label} "
                             f"on shifted streams {fig[f'{metric}_shifted']}", "trigger")
        self.task.snapshot(self, "before")
        return detail

    def retrain(self, fig: dict[str, Any], trigger: dict[str, Any]) -> int:
        result_file = self.fleet.dir / "retrain" / "result.json"
        script = self.task.retrain_module.replace(".", "/") + ".py"
        self.tl.log("retrain", f"the trigger's command action runs {script}: "
                               "label samples, train v2, edgekit build, publish, rollout")
        done = wait_until(lambda: result_file.is_file(), self.s.retrain_timeout_s + 30, 2)
        if not done:
            raise StageFailed(f"the retraining command did not finish within "
                              f"{self.s.retrain_timeout_s:g} s; see {self.fleet.logs}")
        doc = json.loads(result_file.read_text())
        fig.update(doc)
        if "error" in doc:
            raise StageFailed(f"retraining failed: {doc['error']}")
        self.facts["retrain_report"] = doc.get("build_report")
        self.tl.log("retrain", f"v{doc['version']}: {doc['samples']['labelled']} labelled "
                               f"samples, validation {self.task.metric_label} "
                               f"{doc[f'validation_{self.task.metric}']}, "
                               f"build {doc['build_seconds']} s, published "
                               f"{len(doc['bundles'])} bundles; rollout {doc['rollout']}",
                    "rollout")
        return int(doc["rollout"])

    def rollout(self, fig: dict[str, Any], rollout_id: int) -> None:
        seen: set[str] = set()

        def step() -> dict[str, Any] | None:
            doc = self.fleet.get(f"rollouts/{rollout_id}")
            if doc["state"] not in seen:
                seen.add(doc["state"])
                self.tl.log("rollout", f"rollout {rollout_id}: {doc['state']}")
            return doc if doc["state"] in TERMINAL else None

        doc = wait_until(step, self.s.rollout_timeout_s, 1)
        if doc is None:
            raise StageFailed(f"rollout {rollout_id} did not finish within "
                              f"{self.s.rollout_timeout_s:g} s")
        self.facts["rollout"] = doc
        want = str(fig.get("version") or "2")

        def versions() -> dict[str, str | None]:
            found = {d["id"]: d for d in self.fleet.get(f"devices?fleet={FLEET}")["items"]}
            return {d: (found.get(d) or {}).get("model_version") for d in self.streams}

        # the registry learns a device's version from its next telemetry
        versions = wait_until(lambda: (v := versions()) and set(v.values()) == {want} and v,
                              15, 1) or versions()
        fig.update(id=rollout_id, state=doc["state"], versions=versions)
        self.tl.log("rollout", f"rollout {rollout_id} {doc['state']}; devices run " + ", ".join(
            f"{d} v{v}" for d, v in versions.items()), "done")
        if doc["state"] != "done":
            raise StageFailed(f"rollout {rollout_id} ended {doc['state']}{_why(doc)}")
        if set(versions.values()) != {want}:
            raise StageFailed("not every device runs v" + want + ": " + ", ".join(
                f"{d} v{v}" for d, v in versions.items()))

    def recovery(self, fig: dict[str, Any], baseline: dict[str, Any],
                 before: dict[str, Any]) -> None:
        metric, label = self.task.metric, self.task.metric_label
        for stream in self.streams.values():
            stream.pool = "fresh"
        began = time.time()
        self.tl.log("recovery", f"{self.s.recovery_s:g} s of fresh held-out inputs (never "
                                "labelled or trained on), shift still on")
        time.sleep(self.s.recovery_s)
        for device in self.streams:
            obs = [o for o in self.recent(began, [device]) if o.version != "1"]
            fig[device] = {metric: _r(self.task.score(obs)), "inferences": len(obs)}
        shifted = [o for o in self.recent(began, self.s.shifted) if o.version != "1"]
        verdict = self.task.recovery(self.s, baseline.get(f"{metric}_shifted"),
                                     before.get(f"{metric}_shifted"), _r(self.task.score(shifted)))
        fig.update({f"{metric}_shifted": verdict.after,
                    f"{metric}_shifted_before": verdict.before,
                    f"{metric}_shifted_baseline": verdict.baseline,
                    "share_of_drop_recovered": verdict.share_of_drop, **verdict.figures})
        self.task.snapshot(self, "after")
        self.tl.log("recovery", f"{label} on the shifted streams {verdict.baseline} unshifted "
                                f"-> {verdict.before} shifted with v1 -> {verdict.after} with v2",
                    "recovered")
        if verdict.failure:
            raise StageFailed(verdict.failure)
        fired = self.triggers()
        fig["triggers"] = len(fired)
        if len(fired) != 1:
            raise StageFailed(f"{len(fired)} triggers fired; expected exactly one")

    # -- the run ---------------------------------------------------------------------------
    def _stages(self) -> None:
        tl = self.tl
        with tl.stage("keys"):
            key, pub = self.keys()
        with tl.stage("train") as fig:
            weights = self.train(fig)
        with tl.stage("build") as fig:
            bundles = self.build(fig, weights, key)
        with tl.stage("fleet") as fig:
            self.start_fleet(fig, bundles, key, pub, weights)
        with tl.stage("baseline") as fig:
            self.baseline(fig)
            baseline_fig = fig
        with tl.stage("drift") as fig:
            trigger = self.drift(fig)
            drift_fig = fig
        with tl.stage("retrain") as fig:
            rollout_id = self.retrain(fig, trigger)
            version = fig.get("version")
        with tl.stage("rollout") as fig:
            fig["version"] = version
            self.rollout(fig, rollout_id)
        with tl.stage("recovery") as fig:
            self.recovery(fig, baseline_fig, drift_fig)

    def run(self) -> int:
        s = self.s
        s.out.mkdir(parents=True, exist_ok=True)
        console.rule(f"edgekit demo: the whole loop ({self.task.name})")
        interrupted = False
        try:
            self._stages()
        except KeyboardInterrupt:
            interrupted = True
            self.tl.log("demo", "interrupted (Ctrl-C): stopping everything")
        except Exception as exc:
            if not any(st["status"] == "failed" for st in self.tl.stages.values()):
                self.tl.log("demo", f"[red]error:[/] {exc}")
                self.tl.stages.setdefault("demo", {"status": "failed", "error": str(exc)})
        try:
            if self.fleet is not None and self.fleet.procs:
                self.report()
            self._finish(interrupted)  # readable while it keeps running
            if s.keep_running and self.fleet is not None and not interrupted:
                self.keep_running()  # Ctrl-C is how it ends: not a failure
        except KeyboardInterrupt:
            pass
        finally:
            self.shutdown()
        path = self._finish(interrupted)
        verdict = "[green]every stage ok[/]" if self.tl.ok() else "[red]a stage failed[/]"
        console.print(f"\n{verdict}: {path}, {s.out / 'report.html'}", highlight=False)
        return 0 if self.tl.ok() else 1

    def _finish(self, interrupted: bool) -> Path:
        """Write summary.json (again at the very end, with everything stopped)."""
        if interrupted:
            self.tl.stages.setdefault("interrupted", {"status": "failed",
                                                      "error": "stopped with Ctrl-C"})
        return self.tl.write_summary(self.s.out / "summary.json")

    def report(self) -> None:
        from edgekit.demo.report import collect, write_report

        try:
            with self.tl.stage("report") as fig:
                data = collect(self)
                path = write_report(self, data, self.s.out / "report.html")
                fig["html"] = str(path)
                self.tl.log("report", f"{path}")
        except Exception:  # the stage is failed with its error, printed and in
            return         # summary.json; the processes must still be stopped

    def keep_running(self) -> None:
        fleet = self.fleet
        console.print(f"\n[bold]still running[/] (--keep-running): dashboard "
                      f"{fleet.api}/dashboard (token in {fleet.token_file}); Ctrl-C stops "
                      "everything", highlight=False)
        while True:
            gone = fleet.alive()
            if gone:
                console.print(f"[red]stopped on its own:[/] {', '.join(gone)}; see "
                              f"{fleet.logs}", highlight=False)
                self.tl.stages["keep_running"] = {
                    "status": "failed", "error": f"stopped on its own: {', '.join(gone)}"}
                return
            time.sleep(1)

    def shutdown(self) -> None:
        self.stopping.set()
        for stream in self.streams.values():
            stream.stop()
        for stream in self.streams.values():
            stream.join(5)
        if self.fleet is not None:
            self.labels.save(self.fleet.dir / "labels.json")
            self.fleet.stop()


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_demo(s: DemoSettings) -> int:
    """Run the demo; the exit status (0 when every stage is ok). SIGTERM stops it like
    Ctrl-C: every process it started is stopped first."""
    import signal

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return Demo(s).run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _why(doc: dict[str, Any]) -> str:
    """Why a rollout did not finish: its verdict's reasons and its failed devices' errors."""
    reasons = list((doc.get("verdict") or {}).get("reasons") or [])
    for dev in doc.get("devices") or []:
        if dev.get("state") in ("failed", "rolled_back"):
            error = (dev.get("result") or {}).get("error") or dev["state"]
            reasons.append(f"{dev.get('device_id')}: {error}")
    return (": " + "; ".join(str(r) for r in reasons))[:600] if reasons else ""

