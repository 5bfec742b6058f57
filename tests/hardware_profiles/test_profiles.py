"""Shipped profiles are valid and true to their devices; broken ones get one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardware_profiles import ProfileError, get_profile, load_profile_file, load_profiles
from hardware_profiles.loader import BUILTIN_DIR

SHIPPED = ["rpi4", "rpi5", "rpi-zero-2w", "jetson-nano", "jetson-orin-nano", "x86-64"]
VALID = (BUILTIN_DIR / "rpi4.yaml").read_text()


def test_all_six_profiles_ship():
    assert set(SHIPPED) <= set(load_profiles())


@pytest.mark.parametrize("name", sorted(load_profiles()))
def test_every_profile_is_consistent(name):
    profile = get_profile(name)
    assert profile.targets, "a profile needs at least one target"
    for target in profile.targets:
        assert target.threads <= profile.cpu.cores, "threads beyond the device's cores"
        assert max(target.thread_options()) <= profile.cpu.cores, "thread choice beyond cores"
        assert target.thread_options()[0] == target.threads
    assert profile.formats()
    text = (BUILTIN_DIR / f"{name}.yaml").read_text()
    assert "\nhost_timing: " in text, "every shipped profile says whether host timings stand"


@pytest.mark.parametrize("name, host_timing", [
    ("x86-64", "representative"), ("rpi4", "rank_only"), ("rpi5", "rank_only"),
    ("rpi-zero-2w", "rank_only"), ("jetson-nano", "not_representative"),
    ("jetson-orin-nano", "not_representative")])
def test_host_timing_says_whether_host_figures_stand_for_the_device(name, host_timing):
    assert get_profile(name).host_timing == host_timing


@pytest.mark.parametrize("name, arch, cores, memory_mb", [
    ("rpi4", "aarch64", 4, 4096), ("rpi5", "aarch64", 4, 8192),
    ("rpi-zero-2w", "aarch64", 4, 512), ("jetson-nano", "aarch64", 4, 4096),
    ("jetson-orin-nano", "aarch64", 6, 8192), ("x86-64", "x86_64", 2, 4096),
])
def test_device_facts(name, arch, cores, memory_mb):
    profile = get_profile(name)
    assert (profile.arch, profile.cpu.cores, profile.memory_mb) == (arch, cores, memory_mb)


def test_jetson_nano_gains_nothing_from_int8():
    precisions = {t.precision for t in get_profile("jetson-nano").targets}
    assert "int8" not in precisions and get_profile("jetson-nano").targets[0].precision == "fp16"


@pytest.mark.parametrize("name", ["jetson-nano", "jetson-orin-nano"])
def test_jetsons_run_onnxruntime_with_tensorrt_and_cuda(name):
    first = get_profile(name).targets[0]
    assert first.format == "onnx"
    assert first.providers[:2] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


@pytest.mark.parametrize("name", ["rpi4", "rpi5", "rpi-zero-2w"])
def test_pis_run_xnnpack_int8_first(name):
    first = get_profile(name).targets[0]
    assert (first.format, first.precision, first.delegate) == ("tflite", "int8", "xnnpack")


def test_user_profile_from_profiles_dir(tmp_path: Path):
    (tmp_path / "my-board.yaml").write_text(VALID.replace("name: rpi4", "name: my-board"))
    assert "my-board" in load_profiles([tmp_path])


def test_user_profile_from_env_var(tmp_path: Path, monkeypatch):
    (tmp_path / "env-board.yaml").write_text(VALID.replace("name: rpi4", "name: env-board"))
    monkeypatch.setenv("EDGEKIT_PROFILES_DIR", str(tmp_path))
    assert get_profile("env-board").name == "env-board"


@pytest.mark.parametrize("old, new, expected", [
    ("precision: int8", "precision: int4", r"field 'targets.0.tflite.precision'.*'fp32', 'fp16'"),
    ("arch: aarch64", "arch: sparc", r"field 'arch'.*'aarch64', 'x86_64' or 'armv7l'"),
    ("  cores: 4\n", "  cores: many\n", r"field 'cpu.cores'"),
    ("memory_mb: 4096\n", "", r"field 'memory_mb': Field required"),
    ("format: tflite", "format: tensorrt", r"field 'targets.0'.*'onnx', 'tflite'"),
    ("name: rpi4", "name: rpi4\ncolour: red", r"field 'colour': Extra inputs"),
    ("host_timing: rank_only", "host_timing: exact", r"field 'host_timing'.*'representative'"),
    ("delegate: xnnpack", "delegate: gpu",
     r"host_timing must be not_representative: a target uses a GPU"),
    ("    thread_choices: [1, 2]", "    thread_choices: [0]", r"field 'targets.0.tflite.thread"),
])
def test_broken_profile_names_file_field_and_what_is_allowed(tmp_path, old, new, expected):
    path = tmp_path / "rpi4.yaml"
    path.write_text(VALID.replace(old, new, 1))
    with pytest.raises(ProfileError, match=expected) as info:
        load_profile_file(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_yaml_syntax_error_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="cannot read YAML") as info:
        load_profile_file(path)
    assert "\n" not in str(info.value)


def test_name_must_match_file(tmp_path):
    (tmp_path / "other.yaml").write_text(VALID)
    with pytest.raises(ProfileError, match="must match the file name"):
        load_profiles([tmp_path])


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ProfileError, match=r"unknown profile 'rpi9'; known profiles: .*rpi4"):
        get_profile("rpi9")


def test_missing_profiles_dir_is_clear(tmp_path):
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles([tmp_path / "nope"])


def test_profile_targets_use_the_shared_vocabularies():
    from typing import get_args

    from edge_agent.contracts.vocab import FORMATS, PRECISIONS
    from hardware_profiles.schema import OnnxTarget, TfliteTarget

    target_types = (OnnxTarget, TfliteTarget)
    formats = {get_args(t.model_fields["format"].annotation)[0] for t in target_types}
    assert formats == set(FORMATS), "every shared format needs a profile target type"
    for target in target_types:
        assert get_args(target.model_fields["precision"].annotation) == PRECISIONS
