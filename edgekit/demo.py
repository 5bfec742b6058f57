"""The end-to-end demo, in the steps that exist so far.

Today: train a small classifier on scikit-learn's bundled digits, write it as a
real ONNX file, pack it into a signed bundle for a profile, verify the bundle
and prove on this machine's runtime that it computes what was packed.
Still to come (said at the end of the run): the torch build pipeline, the agent
over MQTT, and the cloud loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.cli.output import console


def train_digits_onnx(path: Path) -> float:
    """A multinomial logistic regression on digits, saved as ONNX; returns its test accuracy."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    clf = LogisticRegression(max_iter=500).fit(x_train, y_train)
    w = clf.coef_.T.astype(np.float32)
    b = clf.intercept_.astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["mm"]),
         helper.make_node("Add", ["mm", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "digits_logreg",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return float(clf.score(x_test, y_test))


def run_demo(workdir: Path, profile_name: str = "x86-64") -> None:
    """Run every step that exists, printing what each one did."""
    from edge_agent.bundle import generate_keypair, open_bundle, trusted_keys
    from edge_agent.model import LoadedModel
    from export.pack import PackRequest, pack_model
    from hardware_profiles import get_profile, load_profiles

    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("edgekit demo")
    console.print(f"1. profiles: {', '.join(load_profiles())}")
    keys = workdir / "keys"
    private, public = (keys / "edgekit_ed25519.pem", keys / "edgekit_ed25519.pub.pem")
    if not private.exists():
        private, public = generate_keypair(keys)
    console.print(f"2. signing key: {private}")
    model_path = workdir / "digits.onnx"
    accuracy = train_digits_onnx(model_path)
    console.print(f"3. trained a digits classifier: test accuracy {accuracy:.3f} -> {model_path}")
    bundle = workdir / f"digits-1-{profile_name}.ekb"
    manifest = pack_model(PackRequest(model_file=model_path, profile=get_profile(profile_name),
                                      name="digits", version="1", key_file=private, out=bundle,
                                      labels=[str(i) for i in range(10)]))
    console.print(f"4. packed and signed {bundle} ({manifest.target.format}/"
                  f"{manifest.target.precision} for {manifest.profile})")
    with open_bundle(bundle, trusted_keys([public]), known_profiles=set(load_profiles())) as b:
        loaded = LoadedModel.load(b)
        console.print(f"5. verified signature (key {b.key_id}) and golden output on "
                      f"{loaded.session.backend}: max abs diff {loaded.golden.max_abs_diff:.2g}")
    console.print("[yellow]not yet in this demo:[/] the torch build pipeline (prune, distill, "
                  "quantize, export), the agent over MQTT, and the cloud loop.")
