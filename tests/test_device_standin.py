"""The stand-in Android device, driven by the real Debian adb client and server.

Protocol tests run wherever `adb` is installed (commands then run on the host if the arm64 userland is
unavailable); tests marked as needing the userland run real aarch64 code under qemu-user and skip, with the
reason, where root, binfmt_misc or the built userland is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from pathlib import Path

import pytest

from device_standin import fixtures
from device_standin.device_profile import PIXEL_2
from mnetdeploy.devices.benchmark_output import BenchmarkFailed, parse_benchmark_output

STANDIN_SCRIPT = Path(__file__).resolve().parent / "device_standin" / "benchmark_model_standin.py"


def text(result) -> str:
    return result.stdout.decode()


def both(result) -> str:
    """stdout + stderr: adb 29 prints some of its own errors on stdout (e.g. a failed pull), others on stderr."""
    return result.stdout.decode() + result.stderr.decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the ADB protocol as the real client sees it -----------------------------------------------------------

def test_adb_devices_lists_the_standin_as_a_device_with_its_product(adb_standin):
    listing = text(adb_standin.adb("devices", "-l", serial=False))
    line = next(l for l in listing.splitlines() if l.startswith(adb_standin.serial))
    assert line.split()[1] == "device"
    assert "product:walleye" in line and "model:Pixel_2" in line and "device:walleye" in line


def test_exit_codes_and_stderr_come_through_shell_v2(adb_standin):
    assert adb_standin.adb("shell", "true").returncode == 0
    assert adb_standin.adb("shell", "false").returncode == 1
    result = adb_standin.adb("shell", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7
    assert text(result) == "out\n"
    assert result.stderr.decode() == "err\n"


def test_stdin_is_forwarded_to_the_command(adb_standin):
    result = adb_standin.adb("shell", "cat", input=b"through stdin\n")
    assert (result.returncode, text(result)) == (0, "through stdin\n")


def test_without_shell_v2_adb_29_loses_exit_codes(adb_standin_factory):
    """Why the device must advertise shell_v2: with the v1 protocol `adb shell false` reports success."""
    session = adb_standin_factory(features=["cmd", "stat_v2", "fixed_push_mkdir"])
    result = session.adb("shell", "echo v1; false")
    assert result.returncode == 0
    assert text(result) == "v1\n"
    assert session.device.services_opened[-1] == "shell:echo v1; false"


def test_push_and_pull_round_trip_a_3mb_file(adb_standin, tmp_path):
    payload = os.urandom(3 * 1024 * 1024)
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    remote = "/data/local/tmp/mnetdeploy/roundtrip/payload.bin"   # parents don't exist: the device makes them

    push = adb_standin.adb("push", str(local), remote)
    assert push.returncode == 0, push.stderr.decode()
    assert sha256(adb_standin.host_path(remote).read_bytes()) == sha256(payload)
    on_device = text(adb_standin.adb("shell", f"sha256sum {adb_standin.shell_path(remote)}"))
    assert on_device.split()[0] == sha256(payload)

    pulled = tmp_path / "pulled.bin"
    pull = adb_standin.adb("pull", remote, str(pulled))
    assert pull.returncode == 0, pull.stderr.decode()
    assert sha256(pulled.read_bytes()) == sha256(payload)


def test_pull_of_a_missing_file_fails_with_adbs_message(adb_standin, tmp_path):
    result = adb_standin.adb("pull", "/data/local/tmp/absent.bin", str(tmp_path / "x"))
    assert result.returncode != 0
    assert "failed to stat remote object '/data/local/tmp/absent.bin': No such file or directory" in both(result)


def test_getprop_answers_from_the_device_profile(adb_standin):
    assert text(adb_standin.adb("shell", "getprop ro.product.cpu.abi")) == "arm64-v8a\n"
    assert text(adb_standin.adb("shell", "getprop ro.product.model")) == "Pixel 2\n"
    assert text(adb_standin.adb("shell", "getprop ro.build.version.release")) == "11\n"
    assert text(adb_standin.adb("shell", "getprop ro.board.platform")) == "msm8998\n"
    assert text(adb_standin.adb("shell", "getprop no.such.property")) == "\n"
    listing = text(adb_standin.adb("shell", "getprop"))
    assert "[ro.soc.model]: [MSM8998]\n" in listing


def test_properties_are_configurable(adb_standin_factory):
    profile = PIXEL_2.with_properties({"ro.product.model": "Test Phone", "ro.product.cpu.abi": "armeabi-v7a"})
    session = adb_standin_factory(profile=profile)
    assert text(session.adb("shell", "getprop ro.product.cpu.abi")) == "armeabi-v7a\n"
    assert "model:Test_Phone" in text(session.adb("devices", "-l", serial=False))


def test_df_reports_the_configured_free_space_and_a_full_device_refuses_pushes(adb_standin_factory, tmp_path):
    session = adb_standin_factory(profile=dataclasses.replace(PIXEL_2, data_free_kb=1024))
    df = text(session.adb("shell", "df /data/local/tmp")).splitlines()
    assert df[0].split()[:4] == ["Filesystem", "1K-blocks", "Used", "Available"]
    assert df[1].split()[3] == "1024" and df[1].split()[-1] == "/data"

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    push = session.adb("push", str(big), "/data/local/tmp/big.bin")
    assert push.returncode != 0
    assert "No space left on device" in both(push)
    assert not session.host_path("/data/local/tmp/big.bin").exists()


def test_reject_mode_leaves_the_device_unauthorized(adb_standin_factory):
    session = adb_standin_factory(authorize=False)
    listing = text(session.adb("devices", serial=False))
    assert f"{session.serial}\tunauthorized" in listing
    result = session.adb("shell", "true")
    assert result.returncode != 0
    assert "unauthorized" in both(result)
    assert session.device.services_opened == []     # nothing ran on an unauthorized device


def test_device_vanishing_mid_command_cuts_the_output_and_then_adb_fails(adb_standin_factory):
    """adb 29 exits 0 when the stream ends without shell_v2's exit packet (its read_and_dump starts from
    exit_code = 0), so a vanished device shows as missing output, not as an exit status. Callers must check
    that the output is complete (the benchmark parser refuses output without timings); the next command fails."""
    session = adb_standin_factory(disappear_when_file="/data/local/tmp/vanish-now")
    started = time.monotonic()
    trigger = session.shell_path("/data/local/tmp/vanish-now")
    result = session.adb("shell", f"echo started; touch {trigger}; sleep 60; echo finished", timeout=60)
    assert time.monotonic() - started < 30           # adb noticed the loss; it did not wait for the command
    assert "finished" not in text(result)
    assert session.device.disappeared.is_set()
    after = session.adb("shell", "true", timeout=30)
    assert after.returncode != 0
    assert re.search(r"error: device (offline|'[^']+' not found)", both(after))


def test_device_vanishing_after_n_commands(adb_standin_factory):
    session = adb_standin_factory(disappear_at_command=2, disappear_delay=0.5)
    assert text(session.adb("shell", "echo first")) == "first\n"
    result = session.adb("shell", "sleep 60; echo second", timeout=60)
    assert "second" not in text(result)
    assert session.device.commands_started == 2
    assert session.adb("shell", "true", timeout=30).returncode != 0


def test_unknown_service_is_refused(adb_standin):
    # `adb reboot` opens "reboot:", which this device does not offer; adb reports the closed stream.
    result = adb_standin.adb("reboot", timeout=30)
    assert "reboot:" in adb_standin.device.services_opened
    assert result.returncode != 0 or b"closed" in result.stderr


def test_host_mode_serves_the_protocol_without_the_userland(adb_standin_factory, tmp_path):
    session = adb_standin_factory(arm64=False)
    assert not session.arm64
    assert session.adb("shell", "exit 3").returncode == 3
    local = tmp_path / "f.txt"
    local.write_text("host mode\n")
    assert session.adb("push", str(local), "/data/local/tmp/f.txt").returncode == 0
    assert (session.rootfs / "data/local/tmp/f.txt").read_text() == "host mode\n"


# --- where real ARM execution is impossible, the tests say why ----------------------------------------------

def test_arm64_skip_reasons_name_the_missing_piece(monkeypatch, tmp_path):
    monkeypatch.setattr(fixtures.os, "geteuid", lambda: 1000)
    assert "needs root" in fixtures.arm64_unavailable_reason()

    monkeypatch.setattr(fixtures.os, "geteuid", lambda: 0)
    monkeypatch.setattr(fixtures, "BINFMT_ENTRY", tmp_path / "qemu-aarch64")
    assert "not registered with binfmt_misc" in fixtures.arm64_unavailable_reason()

    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"
                                           "flags: OC\n")
    assert "lacks the F flag" in fixtures.arm64_unavailable_reason()

    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /x\nflags: POF\n")
    monkeypatch.setenv("MNETDEPLOY_DEVICE_ROOTFS", str(tmp_path / "nowhere"))
    reason = fixtures.arm64_unavailable_reason()
    assert f"not built at {tmp_path / 'nowhere' / 'rootfs'}" in reason and "make_rootfs.sh" in reason


# --- real ARM execution ----------------------------------------------------------------------------------

def test_shell_commands_run_as_aarch64(adb_standin_arm64):
    assert text(adb_standin_arm64.adb("shell", "uname -m")) == "aarch64\n"
    result = adb_standin_arm64.adb("shell", "python3 -c 'import platform, sys; print(platform.machine(), "
                                            "sys.version_info[:2])'")
    assert text(result) == "aarch64 (3, 11)\n"


def test_cpu_and_thermal_files_look_like_a_big_little_phone(adb_standin_arm64):
    session = adb_standin_arm64
    script = ("for c in 0 1 2 3 4 5 6 7; do cat /sys/devices/system/cpu/cpu$c/cpufreq/cpuinfo_max_freq; done; "
              "cat /sys/devices/system/cpu/possible; grep -c ^processor /proc/cpuinfo; "
              "cat /sys/devices/system/cpu/cpu4/cpufreq/scaling_governor; "
              "cat /sys/class/thermal/thermal_zone0/type /sys/class/thermal/thermal_zone0/temp")
    lines = text(session.adb("shell", script)).splitlines()
    assert lines[:8] == ["1900800"] * 4 + ["2457600"] * 4
    assert lines[8:] == ["0-7", "8", "schedutil", "cpu0-silver-usr", "36200"]


def test_taskset_checks_the_mask_against_the_phones_cpus(adb_standin_arm64):
    session = adb_standin_arm64
    assert text(session.adb("shell", "taskset f0 echo pinned")) == "pinned\n"
    refused = session.adb("shell", "taskset 100 echo never")
    assert refused.returncode == 1
    assert "Invalid argument" in refused.stderr.decode()
    assert session.host_path("/standin/taskset.log").read_text() == "f0 echo pinned\n"


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    """A tiny float model made here with TensorFlow: conv -> global pool -> dense, 32x32x3 input."""
    tf = pytest.importorskip("tensorflow")
    model = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)),
        tf.keras.layers.Conv2D(8, 3, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(4),
    ])
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def push_benchmark(session, model: Path) -> str:
    """Push model and stand-in to a per-hash directory, as the tool will; returns that directory."""
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    remote_dir = f"/data/local/tmp/mnetdeploy/{digest}"
    for local, name in ((model, "model.tflite"), (STANDIN_SCRIPT, "benchmark_model")):
        result = session.adb("push", str(local), f"{remote_dir}/{name}")
        assert result.returncode == 0, result.stderr.decode()
    return remote_dir


def test_benchmark_standin_runs_the_model_as_aarch64_and_its_output_parses(adb_standin_arm64, tiny_tflite):
    session = adb_standin_arm64
    remote = push_benchmark(session, tiny_tflite)
    command = (f"taskset f0 python3 {remote}/benchmark_model --graph={remote}/model.tflite --num_threads=2 "
               "--warmup_runs=2 --warmup_min_secs=0 --num_runs=8 --min_secs=0 --use_xnnpack=true "
               "--report_peak_memory_footprint=true")
    result = session.adb("shell", command, timeout=120)
    output = result.stdout.decode() + result.stderr.decode()   # benchmark_model logs to stderr
    assert result.returncode == 0, output

    parsed = parse_benchmark_output(output)
    assert parsed.parameters["Stand-in machine"] == "aarch64"
    assert parsed.version_format == "tflite-v2"
    assert parsed.count == 8
    assert 0 < parsed.min_ms <= parsed.mean_ms <= parsed.max_ms < 10_000
    assert parsed.min_ms <= parsed.percentiles["p50"] <= parsed.max_ms
    assert parsed.std_ms is not None and parsed.std_ms >= 0
    assert parsed.init_ms > 0 and parsed.first_ms > 0
    assert parsed.delegates == ["XNNPACK"] and parsed.delegation[0].execution == "complete"
    assert parsed.peak_memory_mb > 0
    assert parsed.parameters["Num threads"] == "2"
    # The stats line and the closing summary agree (no parser warning) and the mean is the measured runs'.
    assert parsed.warnings == []
    measured = re.search(r"count=8 .*avg=(\S+)", output)
    assert parsed.mean_ms == pytest.approx(float(measured.group(1)) / 1000)


def test_benchmark_standin_failure_becomes_benchmark_failed(adb_standin_arm64, tiny_tflite):
    session = adb_standin_arm64
    remote = push_benchmark(session, tiny_tflite)
    result = session.adb("shell", f"python3 {remote}/benchmark_model --graph={remote}/missing.tflite")
    assert result.returncode == 1
    with pytest.raises(BenchmarkFailed, match=r"Could not open '/data/local/tmp/mnetdeploy/\w+/missing.tflite'"):
        parse_benchmark_output(result.stdout.decode() + result.stderr.decode())


def test_benchmark_cut_short_by_a_vanishing_device_is_a_failure_not_a_number(adb_standin_factory, tiny_tflite):
    session = adb_standin_factory(arm64=True, disappear_at_command=1, disappear_delay=1.5)
    remote = push_benchmark(session, tiny_tflite)
    result = session.adb("shell", f"python3 {remote}/benchmark_model --graph={remote}/model.tflite "
                                  "--warmup_runs=1 --num_runs=50 --min_secs=20", timeout=60)
    assert session.device.disappeared.is_set()
    with pytest.raises(BenchmarkFailed, match="ends before the measured runs|printed nothing|printed no timing"):
        parse_benchmark_output(both(result))
