"""`mnetdeploy bench --device ...` and `mnetdeploy devices` against real clients and stand-in devices.

Android: the real Debian adb 29 client and server talk to the ADB stand-in (tests/device_standin/), whose shell
commands run in an arm64 Debian userland under qemu-user; the benchmark binary is benchmark_model_standin.py
(real aarch64 LiteRT). Linux boards: the real OpenSSH sshd and ssh (tests/device_standin/sshd.py), sessions in
the same userland, running mnetdeploy's remote_runner.py. Emulated timings mean nothing; what is tested is
that the numbers come from the device, in the host's schema, with the device's facts, and that every failure
is one clear error with the documented exit code and nothing stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from device_standin.device_profile import PIXEL_2
from device_standin.sshd import BOARD_DF, BOARD_MODEL, ssh_board  # noqa: F401  (fixture)

from mnetdeploy.bench.schema import BenchResult
from mnetdeploy.cli import cli
from mnetdeploy.device_names import adb_server_args
from mnetdeploy.devices import DeviceSettings, parse_target, split_exit_marker, with_exit_marker
from mnetdeploy.devices.adb import parse_devices
from mnetdeploy.devices.android import inspect_binary, parse_df_available_kb
from mnetdeploy.devices.hygiene import Cpu, big_core_mask, celsius, parse_cpu_mask, parse_facts, wait_until_cool
from mnetdeploy.errors import UserError

STANDIN_BINARY = Path(__file__).resolve().parent / "device_standin" / "benchmark_model_standin.py"
FAST = ["--runs", "4", "--warmup", "1", "--min-seconds", "0"]


# ------------------------------------------------------------------------------------------------ helpers

@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A real artifact directory: MobileNet v2 0.35/96 built by mnetdeploy, exported to fp32 TFLite."""
    tf = pytest.importorskip("tensorflow")
    from mnetdeploy.build import build
    from mnetdeploy.config import load_config

    out = tmp_path_factory.mktemp("device-models")
    directory = build(load_config(None, {"model.arch": "v2", "model.alpha": 0.35, "model.resolution": 96,
                                         "output": str(out)})).artifact_dir
    model = tf.keras.models.load_model(directory / "model.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (directory / "model_fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return directory


def bench_cli(session, *args: str, env: dict | None = None):
    """`mnetdeploy bench ...` in-process, with the stand-in's private adb server and HOME."""
    environment = {"HOME": session.env["HOME"], "ANDROID_ADB_SERVER_PORT": session.env["ANDROID_ADB_SERVER_PORT"],
                   "ANDROID_SERIAL": None, "ADB": None, **(env or {})} if session else (env or {})
    return CliRunner().invoke(cli, list(args), env=environment)


def error_line(result) -> str:
    return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""


def write_binary(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def pushes(session) -> int:
    """How many `adb push` transfers the device served (each opens one sync: service)."""
    return session.device.services_opened.count("sync:")


def stored(artifact_dir: Path) -> list[dict]:
    path = artifact_dir / "results" / "bench.json"
    return json.loads(path.read_text()) if path.is_file() else []


# ------------------------------------------------------------------------------------- adb: devices command

def test_devices_json_lists_the_standin_with_model_abi_version_and_soc(adb_standin):
    result = bench_cli(adb_standin, "devices", "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)
    assert entry["serial"] == adb_standin.serial and entry["state"] == "device"
    assert (entry["model"], entry["abi"], entry["android_version"], entry["soc"]) == \
        ("Pixel 2", "arm64-v8a", "11", "Qualcomm MSM8998")
    table = bench_cli(adb_standin, "devices").stdout
    assert adb_standin.serial in table and "Pixel 2" in table and "MSM8998" in table
    # the same server named explicitly, as a device farm's remote adb server would be (adb -H HOST -P PORT)
    port = adb_standin.env["ANDROID_ADB_SERVER_PORT"]
    remote = bench_cli(adb_standin, "devices", "--json", "--adb-server", f"127.0.0.1:{port}",
                       env={"ANDROID_ADB_SERVER_PORT": None})
    assert remote.exit_code == 0 and json.loads(remote.stdout)[0]["serial"] == adb_standin.serial


def test_unauthorized_device_says_accept_the_rsa_prompt(adb_standin_factory, artifact):
    session = adb_standin_factory(authorize=False)
    listing = json.loads(bench_cli(session, "devices", "--json").stdout)
    assert listing[0]["state"] == "unauthorized" and "Allow USB debugging" in listing[0]["note"]
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(STANDIN_BINARY))
    assert result.exit_code == 2
    assert f"{session.serial} is unauthorized" in error_line(result)
    assert "accept the 'Allow USB debugging?' prompt" in error_line(result)
    assert session.device.services_opened == []


def test_several_devices_and_no_serial_lists_them(adb_standin_factory, artifact):
    first = adb_standin_factory(arm64=False)
    second = adb_standin_factory(arm64=False)
    assert first.adb("connect", second.serial, serial=False).returncode == 0
    deadline = time.monotonic() + 15
    while len(json.loads(bench_cli(first, "devices", "--json").stdout)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    result = bench_cli(first, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(STANDIN_BINARY))
    assert result.exit_code == 2
    line = error_line(result)
    assert "2 devices connected" in line and first.serial in line and second.serial in line
    assert "--serial" in line and "ANDROID_SERIAL" in line
    # ANDROID_SERIAL or --device android:SERIAL picks one (shown by the pre-flight error naming that device)
    x86 = ["--benchmark-binary", shutil.which("true")]
    for args, env, chosen in ((["--device", "android"], {"ANDROID_SERIAL": second.serial}, second.serial),
                              (["--device", f"android:{first.serial}"], {}, first.serial)):
        picked = bench_cli(first, "bench", str(artifact / "model_fp32.tflite"), *args, *x86, env=env)
        assert picked.exit_code == 2 and f"but android:{chosen} runs arm64-v8a" in error_line(picked)


def wait_for_devices(session, count: int) -> None:
    deadline = time.monotonic() + 15
    while len(json.loads(bench_cli(session, "devices", "--json").stdout)) < count and time.monotonic() < deadline:
        time.sleep(0.2)


def test_device_identity_tells_two_devices_apart_and_refuses_an_absent_one(adb_standin_factory):
    from mnetdeploy.devices import device_identity

    reflashed = PIXEL_2.with_properties(
        {"ro.build.fingerprint": "google/walleye/walleye:11/RP1A.201105.002/6869500:user/release-keys"})
    first = adb_standin_factory(arm64=False)
    second = adb_standin_factory(arm64=False, profile=reflashed)
    assert first.adb("connect", second.serial, serial=False).returncode == 0
    wait_for_devices(first, 2)
    server = f"127.0.0.1:{first.env['ANDROID_ADB_SERVER_PORT']}"
    digest = hashlib.sha256(STANDIN_BINARY.read_bytes()).hexdigest()
    one = device_identity(f"android:{first.serial}", adb_server=server, benchmark_binary=str(STANDIN_BINARY))
    two = device_identity(f"android:{second.serial}", adb_server=server, benchmark_binary=str(STANDIN_BINARY))
    assert (one["kind"], one["serial"], two["serial"]) == ("android", first.serial, second.serial)
    assert one["fingerprint"] == PIXEL_2.properties["ro.build.fingerprint"]
    assert two["fingerprint"] == reflashed.properties["ro.build.fingerprint"]
    assert (one["soc"], one["abi"], one["model"]) == ("Qualcomm MSM8998", "arm64-v8a", "Pixel 2")
    assert one["benchmark_binary_sha256"] == digest
    # stable: asking again gives the same dict (what a cache key needs); other devices differ
    assert device_identity(f"android:{first.serial}", adb_server=server, benchmark_binary=str(STANDIN_BINARY)) == one
    assert one != two
    for absent in ("android:127.0.0.1:1", "ssh://root@127.0.0.1:1"):
        with pytest.raises(UserError) as raised:
            device_identity(absent, adb_server=server)
        assert raised.value.exit_code == 2 and len(str(raised.value).splitlines()) == 1
    assert "no device 127.0.0.1:1" in str(pytest.raises(UserError, device_identity, "android:127.0.0.1:1",
                                                        adb_server=server).value)
    locked = adb_standin_factory(arm64=False, authorize=False)
    with pytest.raises(UserError) as raised:
        device_identity("android", adb_server=f"127.0.0.1:{locked.env['ANDROID_ADB_SERVER_PORT']}")
    assert raised.value.exit_code == 2 and "is unauthorized" in str(raised.value)


def test_advice_quotes_the_serial_it_repeats(adb_standin_factory, artifact):
    session = adb_standin_factory(arm64=False)
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android:x;touch y",
                       "--benchmark-binary", str(STANDIN_BINARY))
    assert result.exit_code == 2
    assert "`adb connect 'x;touch y'` for a network device" in error_line(result)


def test_no_adb_on_path_is_exit_2_with_how_to_install(artifact, tmp_path):
    env = {"PATH": str(tmp_path), "ADB": None, "ANDROID_SERIAL": None}
    for args in (["devices"], ["bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                               "--benchmark-binary", str(STANDIN_BINARY)]):
        result = bench_cli(None, *args, env=env)
        assert result.exit_code == 2
        assert "adb: not found on PATH" in error_line(result)
        assert "platform-tools" in error_line(result) and "apt-get install adb" in error_line(result)


def test_device_options_need_a_device(artifact):
    result = bench_cli(None, "bench", str(artifact / "model_fp32.tflite"), "--trials", "3", "--keep")
    assert result.exit_code == 2 and "--trials, --keep: device options" in error_line(result)


# ------------------------------------------------------------------------------ adb: a real benchmark

def test_android_bench_gives_the_host_schema_with_device_facts_and_flows_into_report_and_gate(adb_standin_arm64,
                                                                                                 artifact, tmp_path):
    from mnetdeploy.report.collect import build_report
    from mnetdeploy.report.write import write_report

    session = adb_standin_arm64
    model = artifact / "model_fp32.tflite"
    # The big cores start hot: the first trial must wait until a (simulated) fan has cooled them, which happens
    # 1 s after the cool-down loop first read the zones (the 2nd command reading them; the 1st is pre-flight).
    hot_zone = session.host_path("/sys/class/thermal/thermal_zone4/temp")
    hot_zone.write_text("52000\n")

    def fan():
        deadline = time.monotonic() + 120
        while sum("thermal_zone" in s for s in session.device.services_opened) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.0)
        hot_zone.write_text("39000\n")
    cooler = threading.Thread(target=fan, daemon=True)
    cooler.start()
    result = bench_cli(session, "bench", str(model), "--device", "android", "--benchmark-binary",
                       str(STANDIN_BINARY), *FAST, "--trials", "2", "--json")
    cooler.join()
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    r = BenchResult.from_dict(record)              # the host's schema, read back like the gate does

    assert r.device == f"android:{session.serial}" and r.runtime == "benchmark_model"
    assert r.execution["parameters"]["Stand-in machine"] == "aarch64"   # the model ran as ARM code
    from mnetdeploy.devices import device_identity

    assert r.identity == record["identity"] == device_identity(
        "android", adb_server=f"127.0.0.1:{session.env['ANDROID_ADB_SERVER_PORT']}",
        benchmark_binary=str(STANDIN_BINARY))
    assert (r.identity["serial"], r.identity["fingerprint"], r.identity["machine"]) == \
        (session.serial, PIXEL_2.properties["ro.build.fingerprint"], "aarch64")
    assert r.execution["parameters"]["Num threads"] == "1"
    assert r.runs == 8 and r.warmup_runs == 1 and r.xnnpack is True and r.precision == "fp32"
    lat = r.latency_ms
    assert 0 < lat.min <= lat.p50 <= lat.max and lat.min <= lat.mean <= lat.max
    assert lat.p90 is None and lat.p99 is None                      # benchmark_model prints no p90/p99
    trials = r.execution["trials"]
    assert r.execution["samples_kind"] == "trial_p50"
    assert r.samples_ms == [round(t["p50_ms"], 6) for t in trials]
    assert r.init_ms > 0 and r.first_ms > 0 and r.peak_rss_mb > 0
    assert r.execution["delegate"] == "xnnpack"

    env = r.environment
    device = env["device"]
    assert (device["model"], device["abi"], device["android_version"], device["soc"]) == \
        ("Pixel 2", "arm64-v8a", "11", "Qualcomm MSM8998")
    assert env["cpu_model"] == "Qualcomm MSM8998" and env["cpu_count"] == 8
    assert env["pinning"]["taskset_mask"] == "f0" and env["cpu_affinity"] == [4, 5, 6, 7]
    assert env["cpufreq"]["governor"] == "schedutil"
    assert env["cpufreq"]["per_cpu"]["4"]["max_mhz"] == 2458
    assert env["benchmark_binary"]["sha256"] == hashlib.sha256(STANDIN_BINARY.read_bytes()).hexdigest()
    first, second = env["thermal"]["trials"]
    assert first["waited_s"] >= 1.0 and first["cooled"] is True
    assert trials[0]["cooldown"]["start_c"] == 52.0
    assert first["before"]["cpu0-gold-usr (4)"] == 39.0 and first["after"]["cpu0-gold-usr (4)"] == 39.0
    assert second["waited_s"] < 0.9
    # taskset really was asked for the big cores, for both trials
    log = session.host_path("/standin/taskset.log").read_text().splitlines()
    assert [line.split()[0] for line in log] == ["f0", "f0"] and all("benchmark_model" in line for line in log)

    # stored in the artifact directory and in report.json's latency, device and all
    kept = [s for s in stored(artifact) if s["device"] == r.device]
    assert len(kept) == 1 and kept[0]["model"] == "model_fp32.tflite"
    latency = [x for x in build_report(artifact)["latency"] if x["device"] == r.device]
    assert len(latency) == 1 and latency[0]["latency_ms"]["p50"] == lat.p50
    # ... and the gate judges it: a budget for this device passes at 2x its p50 and fails at half of it
    write_report(artifact)
    budgets = tmp_path / "budgets.yaml"
    for factor, verdict, code in ((2.0, "pass", 0), (0.5, "fail", 1)):
        budgets.write_text(f'rules:\n  - name: phone\n    artifact: "*.tflite"\n    device: "{r.device}"\n'
                           f"    max_p50_ms: {lat.p50 * factor}\n")
        gate = CliRunner().invoke(cli, ["gate", str(artifact), "--budgets", str(budgets), "--json"])
        assert gate.exit_code == code, gate.output
        (check,) = json.loads(gate.stdout)["checks"]
        assert (check["device"], check["measured"], check["verdict"]) == (r.device, lat.p50, verdict)

    # default: the model's directory is removed, the binary stays cached
    files = r.execution["files"]
    assert not session.host_path(files["model_dir"]).exists()
    assert session.host_path(files["tool"]).is_file()


def test_android_bench_of_a_directory_takes_its_tflite_files_and_notes_the_onnx_left_out(adb_standin_arm64, artifact,
                                                                                         tmp_path):
    """quantize writes .onnx beside .tflite by default; the README's `bench DIR --device android` must work."""
    session = adb_standin_arm64
    directory = tmp_path / "exports"
    directory.mkdir()
    shutil.copy(artifact / "model_fp32.tflite", directory / "model_fp32.tflite")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 3])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), directory / "model_fp32.onnx")
    result = bench_cli(session, "bench", str(directory), "--device", "android", "--benchmark-binary",
                       str(STANDIN_BINARY), "--runs", "2", "--warmup", "0", "--min-seconds", "0", "--json")
    assert result.exit_code == 0, result.output
    assert [Path(r["model"]).name for r in json.loads(result.stdout)] == ["model_fp32.tflite"]
    assert "note:" in result.stderr and "left out 1 .onnx file(s) (model_fp32.onnx)" in result.stderr
    assert "benchmark_model runs .tflite only" in result.stderr
    # named explicitly, an .onnx is still a one-line error, before anything is copied
    explicit = bench_cli(session, "bench", str(directory / "model_fp32.onnx"), "--device", "android",
                         "--benchmark-binary", str(STANDIN_BINARY))
    assert explicit.exit_code == 2 and "benchmark_model runs .tflite models" in error_line(explicit)
    assert len(explicit.stderr.strip().splitlines()) == 1


def test_second_run_reuses_the_per_hash_directory_without_pushing(adb_standin_arm64, artifact, tmp_path):
    session = adb_standin_arm64
    model = shutil.copy(artifact / "model_fp32.tflite", tmp_path / "m.tflite")   # outside the artifact dir
    args = ["bench", str(model), "--device", "android", "--benchmark-binary", str(STANDIN_BINARY),
            "--runs", "2", "--warmup", "0", "--min-seconds", "0", "--keep", "--json"]
    first = bench_cli(session, *args)
    assert first.exit_code == 0, first.output
    files = json.loads(first.stdout)[0]["execution"]["files"]
    assert sorted(files["pushed"]) == ["benchmark_model", "model.tflite"] and pushes(session) == 2
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    assert files["model_dir"] == f"/data/local/tmp/mnetdeploy/{digest[:16]}"
    on_device = session.host_path(files["model_dir"] + "/model.tflite")
    stamp = on_device.stat().st_mtime_ns

    second = bench_cli(session, *args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)[0]["execution"]["files"]["pushed"] == []
    assert pushes(session) == 2 and on_device.stat().st_mtime_ns == stamp


TURNS = """#!/bin/sh
# benchmark_model stand-in that logs when each benchmark run starts and ends on the device
case "$*" in *--graph=*) echo "start $$" >> /data/local/tmp/turns.log ;; esac
python3 /standin/benchmark_model_standin.py "$@"; status=$?
case "$*" in *--graph=*) echo "end $$" >> /data/local/tmp/turns.log ;; esac
exit $status
"""


def test_two_benchmarks_on_one_device_take_turns_and_both_succeed(adb_standin_arm64, artifact, tmp_path):
    session = adb_standin_arm64
    shutil.copy(STANDIN_BINARY, session.host_path("/standin/benchmark_model_standin.py"))
    binary = write_binary(tmp_path, "benchmark_model", TURNS)
    model = shutil.copy(artifact / "model_fp32.tflite", tmp_path / "same.tflite")   # the same model, twice
    env = {k: v for k, v in os.environ.items() if k not in ("ANDROID_SERIAL", "ADB")}
    env.update(HOME=session.env["HOME"], ANDROID_ADB_SERVER_PORT=session.env["ANDROID_ADB_SERVER_PORT"])
    argv = [sys.executable, "-m", "mnetdeploy", "bench", str(model), "--device", "android", "--benchmark-binary",
            str(binary), *FAST, "--json"]
    runs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err.decode()
        assert json.loads(out)[0]["latency_ms"]["p50"] > 0
    turns = session.host_path("/data/local/tmp/turns.log").read_text().split("\n")[:-1]
    assert len(turns) == 4
    # never two at once: each run's start is followed by its own end
    assert [t.split()[0] for t in turns] == ["start", "end", "start", "end"]
    assert turns[0].split()[1] == turns[1].split()[1] and turns[2].split()[1] == turns[3].split()[1]
    assert not session.host_path("/data/local/tmp/mnetdeploy/lock").exists()      # released
    assert list(session.host_path("/data/local/tmp/mnetdeploy/runs").iterdir()) == []


def hold_lock(session, owner: str) -> Path:
    lock = session.host_path("/data/local/tmp/mnetdeploy/lock")
    lock.mkdir(parents=True)
    (lock / "owner").write_text(owner + "\n")
    return lock


def test_a_device_held_by_another_host_is_a_one_line_error_naming_the_owner(adb_standin_arm64, artifact):
    now = int(time.time())
    lock = hold_lock(adb_standin_arm64, f"host=ci-runner-7 pid=4242 token=t1 started={now} expires={now + 3600}")
    result = bench_cli(adb_standin_arm64, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(STANDIN_BINARY), *FAST, "--lock-timeout", "1")
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "busy: another benchmark holds /data/local/tmp/mnetdeploy/lock (host ci-runner-7 pid 4242" in line
    assert "--lock-timeout 1" in line
    assert [l for l in result.stderr.splitlines() if l.startswith("error:")] == [line]
    # it said what it waited for, once
    waits = [l for l in result.stderr.splitlines() if l.startswith("note: waiting for")]
    assert len(waits) == 1 and f"android:{adb_standin_arm64.serial}: in use by host ci-runner-7 pid 4242" in waits[0]
    assert (lock / "owner").read_text().startswith("host=ci-runner-7 ")          # not ours to remove
    assert pushes(adb_standin_arm64) == 0


def test_stale_device_locks_are_broken(adb_standin_arm64, artifact):
    gone = subprocess.Popen(["true"])
    gone.wait()                                     # a pid of this host that no longer exists
    host = socket.gethostname()
    now = int(time.time())
    for owner in (f"host={host} pid={gone.pid} token=t2 started={now} expires={now + 3600}",
                  f"host=elsewhere pid=1 token=t3 started={now - 7200} expires={now - 3600}"):
        lock = hold_lock(adb_standin_arm64, owner)
        result = bench_cli(adb_standin_arm64, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                           "--benchmark-binary", str(STANDIN_BINARY), "--runs", "1", "--warmup", "0",
                           "--min-seconds", "0", "--lock-timeout", "0")
        assert result.exit_code == 0, result.output
        assert not lock.exists()


# --------------------------------------------------------------------------------- adb: failure paths

VANISHING = """#!/bin/sh
case "$*" in *--graph=*) ;; *) echo "usage: benchmark_model --graph=..."; exit 1 ;; esac
echo "INFO: STARTING!"
echo "INFO: Loaded model"
touch /data/local/tmp/vanish-now
sleep 30
echo "INFO: Inference timings in us: Init: 1, First inference: 1, Warmup (avg): 1, Inference (avg): 1"
"""

CRASHING = """#!/bin/sh
case "$*" in *--graph=*) ;; *) exit 1 ;; esac
echo "INFO: STARTING!" >&2
echo "INFO: Loaded model $1" >&2
echo "ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'. An older version of this builtin might be supported." >&2
echo "ERROR: Registration failed." >&2
kill -SEGV $$
"""


def test_device_gone_mid_run_is_exit_1_and_nothing_is_stored(adb_standin_factory, artifact, tmp_path):
    session = adb_standin_factory(arm64=True, disappear_when_file="/data/local/tmp/vanish-now")
    binary = write_binary(tmp_path, "benchmark_model", VANISHING)
    started = time.monotonic()
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(binary), *FAST)
    assert time.monotonic() - started < 30          # it noticed the loss, it did not wait for the command
    assert session.device.disappeared.is_set()
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert f"android:{session.serial}: the device stopped answering during the benchmark run" in line
    assert "no result was recorded" in line
    # the benchmark's own log is the device's, not adb's words
    assert "adb: INFO" not in line and "the device's last output: INFO: STARTING! | INFO: Loaded model" in line
    assert not any(s["device"] == f"android:{session.serial}" for s in stored(artifact))


def test_binary_crash_is_benchmark_failed_with_its_own_message(adb_standin_arm64, artifact, tmp_path):
    session = adb_standin_arm64
    binary = write_binary(tmp_path, "benchmark_model", CRASHING)
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(binary), *FAST)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "Didn't find op for builtin opcode 'CONV_2D' version '6'" in line
    assert "SIGSEGV (exit status 139)" in line and "no result was recorded" in line
    assert not any(s["device"] == f"android:{session.serial}" for s in stored(artifact))


def test_gpu_delegate_failure_on_the_device_is_quoted_not_a_cpu_number(adb_standin_arm64, artifact):
    result = bench_cli(adb_standin_arm64, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(STANDIN_BINARY), *FAST, "--use-gpu")
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert 'OpenCL library not loaded - dlopen failed: library "libOpenCL.so" not found' in line
    assert "Failed to apply GPU delegate" in line and "it exited with status 1" in line


def test_a_hung_benchmark_hits_the_run_timeout(adb_standin_arm64, artifact, tmp_path):
    binary = write_binary(tmp_path, "benchmark_model", '#!/bin/sh\ncase "$*" in *--graph=*) sleep 60 ;; esac\n')
    started = time.monotonic()
    result = bench_cli(adb_standin_arm64, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(binary), *FAST, "--run-timeout", "2")
    assert result.exit_code == 1 and time.monotonic() - started < 30
    assert "the benchmark run did not finish within 2 s" in error_line(result)


HANGING = """#!/bin/sh
case "$*" in *--graph=*) echo "INFO: STARTING!"; sleep 611 ;; esac
"""


def device_processes(rootfs: Path, marker: bytes) -> list[int]:
    """Host pids of processes running inside the device's userland whose command line contains `marker`
    (the userland has no /proc or ps of its own; its processes are this host's, under qemu-user)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes() and \
                    Path(os.readlink(entry / "root")).resolve() == rootfs.resolve():
                found.append(int(entry.name))
        except OSError:
            continue   # exited meanwhile, or not ours to read
    return found


def wait_gone(rootfs: Path, marker: bytes) -> list[int]:
    """The matching processes still there after SIGKILL had time to land (bounded: at most 10 s)."""
    deadline = time.monotonic() + 10
    while (left := device_processes(rootfs, marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_timed_out_benchmark_is_killed_on_the_android_device(adb_standin_arm64, artifact, tmp_path):
    session = adb_standin_arm64
    binary = write_binary(tmp_path, "benchmark_model", HANGING)
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(binary), *FAST, "--run-timeout", "3")
    assert result.exit_code == 1 and "did not finish within 3 s" in error_line(result)
    assert wait_gone(session.rootfs, b"sleep\x00611") == []


def test_a_timed_out_benchmark_is_killed_on_the_ssh_board(ssh_board, artifact, tmp_path):  # noqa: F811
    binary = write_binary(tmp_path, "benchmark_model", HANGING)
    result = bench_cli(None, "bench", str(artifact / "model_fp32.tflite"), "--device", ssh_board.device,
                       *ssh_board.cli_options(), "--benchmark-binary", str(binary), *FAST, "--run-timeout", "3")
    assert result.exit_code == 1 and "did not finish within 3 s" in error_line(result)
    assert wait_gone(ssh_board.rootfs, b"sleep\x00611") == []


def test_no_space_on_the_device_is_exit_2_before_any_push(adb_standin_factory, artifact):
    session = adb_standin_factory(arm64=True, profile=dataclasses.replace(PIXEL_2, data_free_kb=2048))
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(STANDIN_BINARY), *FAST)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "not enough space in /data/local/tmp: 2.0 MiB free" in line and "free space on the device" in line
    assert pushes(session) == 0


def test_x86_64_binary_for_an_arm64_phone_is_exit_2_before_any_push(adb_standin_arm64, artifact):
    result = bench_cli(adb_standin_arm64, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", shutil.which("true"), *FAST)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert "a x86_64 executable" in line and "arm64-v8a" in line and "android_aarch64_benchmark_model" in line
    assert pushes(adb_standin_arm64) == 0


def test_binary_that_cannot_execute_on_the_device_is_exit_2(adb_standin_arm64, artifact, tmp_path):
    session = adb_standin_arm64
    binary = write_binary(tmp_path, "benchmark_model", "#!/system/bin/no-such-interpreter\n")
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(binary), *FAST)
    assert result.exit_code == 2, result.output
    assert "the benchmark binary does not run there (exit status 127" in error_line(result)
    # the broken binary is not left in the cache, where the next run would trust it
    assert not any(session.host_path("/data/local/tmp/mnetdeploy/bin").iterdir())


def test_a_binary_that_cannot_execute_does_not_evict_the_cached_good_one(adb_standin_arm64, artifact, tmp_path):
    session = adb_standin_arm64
    good = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                     "--benchmark-binary", str(STANDIN_BINARY), "--runs", "1", "--warmup", "0", "--min-seconds", "0",
                     "--json")
    assert good.exit_code == 0, good.output
    cached = session.host_path(json.loads(good.stdout)[0]["execution"]["files"]["tool"])
    bad = write_binary(tmp_path, "benchmark_model", "#!/system/bin/no-such-interpreter\n")
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(bad), *FAST)
    assert result.exit_code == 2 and "does not run there" in error_line(result)
    assert cached.is_file() and [p.name for p in session.host_path("/data/local/tmp/mnetdeploy/bin").iterdir()] \
        == [cached.parent.name]


LYING_DF = """#!/bin/sh
echo "Filesystem      1K-blocks   Used Available Use% Mounted on"
echo "/dev/block/dm-5 53135316 9294148  43841168  18% /data"
"""


def test_a_failed_push_leaves_no_empty_cache_directory(adb_standin_factory, artifact):
    # df says there is room (another app may fill the phone after the check); the copy then fails
    session = adb_standin_factory(arm64=True, profile=dataclasses.replace(PIXEL_2, data_free_kb=64))
    session.host_path("/system/bin/df").write_text(LYING_DF)
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android",
                       "--benchmark-binary", str(STANDIN_BINARY), *FAST)
    assert result.exit_code == 2 and "the device is full" in error_line(result)
    bin_dir = session.host_path("/data/local/tmp/mnetdeploy/bin")
    assert not bin_dir.exists() or list(bin_dir.iterdir()) == []


def test_android_without_a_benchmark_binary_says_where_to_get_one(adb_standin_arm64, artifact):
    result = bench_cli(adb_standin_arm64, "bench", str(artifact / "model_fp32.tflite"), "--device", "android")
    assert result.exit_code == 2
    assert "android_aarch64_benchmark_model" in error_line(result) and "bazel" in error_line(result)


def test_adb_device_without_getprop_runs_the_python_runner(adb_standin_arm64, artifact):
    """A Linux device over adb (no getprop) is detected and measured with remote_runner.py under /tmp."""
    session = adb_standin_arm64
    session.host_path("/system/bin/getprop").unlink()
    session.host_path("/system/bin/df").write_text(BOARD_DF)     # a Linux df: / is writable
    result = bench_cli(session, "bench", str(artifact / "model_fp32.tflite"), "--device", "android", *FAST,
                       "--json")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["device"] == f"adb-linux:{session.serial}" and record["runtime"] == "litert"
    assert len(record["samples_ms"]) == 4 and record["execution"]["samples_kind"] == "per_run"
    assert record["environment"]["machine"] == "aarch64"
    assert record["execution"]["files"]["model_dir"].startswith("/tmp/mnetdeploy/")


# --------------------------------------------------------------------------------- ssh: a Linux board

def test_ssh_board_runs_the_runner_as_aarch64_in_the_same_schema(ssh_board, artifact):  # noqa: F811
    from mnetdeploy.report.collect import build_report

    result = bench_cli(None, "bench", str(artifact / "model_fp32.tflite"), "--device", ssh_board.device,
                       *ssh_board.cli_options(), *FAST, "--json")
    assert result.exit_code == 0, result.output
    r = BenchResult.from_dict(json.loads(result.stdout)[0])
    assert r.device == f"ssh://root@127.0.0.1:{ssh_board.port}" and r.runtime == "litert"
    assert r.execution["runtime_package"] == "ai_edge_litert" and r.execution["delegate"] == "xnnpack"
    assert r.environment["machine"] == "aarch64"                # platform.machine() of the board's python3
    assert len(r.samples_ms) == r.runs == 4 and r.execution["samples_kind"] == "per_run"
    assert r.latency_ms.min <= r.latency_ms.p50 <= r.latency_ms.p90 <= r.latency_ms.max
    assert r.peak_rss_mb > 0
    env = r.environment
    assert env["cpu_model"] == BOARD_MODEL and env["cpu_count"] == 6
    assert env["pinning"]["taskset_mask"] == "30" and env["cpu_affinity"] == [4, 5]   # the two A72 cores
    assert env["thermal"]["cpu_zones"] == ["soc-thermal (0)"]
    log = ssh_board.host_path("/standin/taskset.log").read_text()
    assert log.startswith("30 python3 /tmp/mnetdeploy/bin/")
    latency = [x for x in build_report(artifact)["latency"] if x["device"] == r.device]
    assert len(latency) == 1 and latency[0]["samples_ms"] == r.samples_ms


def test_ssh_board_with_an_unknown_key_is_exit_2(ssh_board, artifact, tmp_path):  # noqa: F811
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    options = [o if not o.startswith("IdentityFile=") else f"IdentityFile={other}" for o in ssh_board.ssh_options]
    result = bench_cli(None, "bench", str(artifact / "model_fp32.tflite"), "--device", ssh_board.device,
                       *[a for o in options for a in ("--ssh-option", o)], *FAST)
    assert result.exit_code == 2
    assert "Permission denied" in error_line(result) and "IdentityFile" in error_line(result)


def test_ssh_board_without_onnxruntime_says_what_to_install(ssh_board, tmp_path):  # noqa: F811
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 3])
    model = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), model)
    result = bench_cli(None, "bench", str(model), "--device", ssh_board.device, *ssh_board.cli_options(), *FAST)
    assert result.exit_code == 2, result.output
    assert "no onnxruntime on the board: pip install onnxruntime" in error_line(result)


def test_ssh_destinations_are_never_read_as_options(tmp_path):
    from mnetdeploy.devices import Target
    from mnetdeploy.devices.ssh import SshTransport

    for bad in ("ssh://-oProxyCommand=touch${IFS}x", "ssh://-oProxyCommand=x@board", "ssh://root@-oPort=2"):
        with pytest.raises(UserError, match="may not start with '-'") as raised:
            parse_target(bad)
        assert raised.value.exit_code == 2
    result = bench_cli(None, "bench", str(tmp_path / "m.tflite"), "--device", "ssh://-oProxyCommand=x")
    assert result.exit_code == 2 and "may not start with '-'" in error_line(result)
    # and in every ssh command line the destination comes after "--", however the Target was made
    transport = SshTransport(Target("ssh", user=None, host="-oProxyCommand=touch"))
    try:
        for argv in (transport._shell_argv("true"), transport._exit_argv()):
            assert argv[argv.index("-oProxyCommand=touch") - 1] == "--"
    finally:
        transport.close()


# ------------------------------------------------------------------------------------ the pieces, alone

def test_elf_header_names_the_machine(tmp_path):
    arm64 = tmp_path / "arm64"
    header = bytearray(64)
    header[:4], header[4], header[5] = b"\x7fELF", 2, 1
    header[18:20] = (183).to_bytes(2, "little")
    arm64.write_bytes(bytes(header))
    assert (inspect_binary(arm64).kind, inspect_binary(arm64).machine) == ("elf", "aarch64")
    assert inspect_binary(shutil.which("true")).machine == "x86_64"
    assert inspect_binary(STANDIN_BINARY).interpreter == "/usr/bin/env python3"
    (tmp_path / "text").write_text("not a program")
    with pytest.raises(UserError, match="not an executable"):
        inspect_binary(tmp_path / "text")


def pixel2_cpus() -> dict[int, Cpu]:
    return {i: Cpu(i, 1900800 if i < 4 else 2457600, 1000000, "schedutil") for i in range(8)}


def test_big_core_mask():
    assert big_core_mask(pixel2_cpus(), threads=4).hex == "f0"
    assert big_core_mask(pixel2_cpus(), threads=6).hex == "ff"          # more threads than big cores
    tensor = {i: Cpu(i, 1800000 if i < 4 else (2250000 if i < 6 else 2800000), None, None) for i in range(8)}
    assert big_core_mask(tensor, threads=1).hex == "c0" and big_core_mask(tensor, threads=3).hex == "f0"
    assert big_core_mask({0: Cpu(0, None, None, None)}, threads=1).mask is None
    assert parse_cpu_mask("0x30", pixel2_cpus()).cpus == [4, 5]
    assert parse_cpu_mask("none", pixel2_cpus()).mask is None
    with pytest.raises(UserError, match="no CPU 8"):
        parse_cpu_mask("100", pixel2_cpus())
    with pytest.raises(UserError, match="hex CPU mask"):
        parse_cpu_mask("big", pixel2_cpus())


def test_thermal_readings_and_the_bounded_cool_down():
    assert (celsius("38600"), celsius("45"), celsius("-273000"), celsius("0"), celsius("x")) == \
        (38.6, 45.0, None, None, None)
    now = [0.0]
    readings = iter([{"cpu-big (0)": 60.0}, {"cpu-big (0)": 50.0}, {"cpu-big (0)": 44.0}])

    def sleep(seconds):
        now[0] += seconds
    cooled = wait_until_cool(lambda: next(readings), 45, 30, sleep=sleep, clock=lambda: now[0])
    assert (cooled.cooled, cooled.start_c, cooled.end_c, cooled.waited_s) == (True, 60.0, 44.0, 4.0)
    now[0] = 0.0
    hot = wait_until_cool(lambda: {"cpu-big (0)": 70.0, "battery (1)": 30.0}, 45, 5, sleep=sleep,
                          clock=lambda: now[0])
    assert (hot.cooled, hot.waited_s) == (False, 5.0)
    assert wait_until_cool(lambda: {}, 45, 5).cooled is None


def test_facts_and_df_and_devices_parsing():
    facts = parse_facts("uname|Linux 4.4 aarch64\nandroid|1\n[ro.product.cpu.abilist]: [arm64-v8a,armeabi-v7a]\n"
                        "cpu|0|1900800|300000|schedutil\ncpu|4|2457600||\nthermal|3|41000|cpu0-gold\n"
                        "thermal|12|-1|disabled\nhas|taskset\n")
    assert facts.android and facts.native_machines() == ["aarch64", "arm"]
    assert facts.cpus[4].max_khz == 2457600 and facts.cpus[4].governor is None
    assert facts.thermal == {"cpu0-gold (3)": 41.0} and facts.tools == {"taskset"}
    toybox = "Filesystem      1K-blocks   Used Available Use% Mounted on\n/dev/block/dm-5 53135316 9294148  43841168  18% /data\n"
    wrapped = "Filesystem 1K-blocks Used Available Use% Mounted on\n/dev/mapper/very-long-name\n  1000 10 990 1% /\n"
    assert parse_df_available_kb(toybox) == 43841168 and parse_df_available_kb(wrapped) == 990
    devices = parse_devices("* daemon started successfully\nList of devices attached\n"
                            "R58M123 device usb:1-1 product:walleye model:Pixel_2 device:walleye transport_id:1\n"
                            "emulator-5554 offline transport_id:2\n"
                            "0123 no permissions (user in plugdev group; are your udev rules wrong?); see [x]\n")
    assert [(d.serial, d.state) for d in devices] == [("R58M123", "device"), ("emulator-5554", "offline"),
                                                      ("0123", "no permissions")]
    assert devices[0].attributes["model"] == "Pixel_2"
    assert adb_server_args("farm.example:5037") == ["-H", "farm.example", "-P", "5037"]
    with pytest.raises(UserError):
        adb_server_args("farm:x")


def test_quoted_device_output_is_cut_at_a_word_boundary():
    from mnetdeploy.devices import last_words

    said = last_words("ERROR: " + "tensor allocation failed " * 20, limit=60)
    assert len(said) <= 60 and said.startswith("…")
    assert said[1:].split()[0] in ("tensor", "allocation", "failed")   # a whole word after the cut
    assert last_words("short | output", limit=60) == "short | output"


def test_cool_down_warning_is_said_once_for_all_trials():
    from mnetdeploy.devices.android import cooldown_warnings

    hot = [{"cooled": False, "end_c": 52.0, "waited_s": 120.0, "start_c": 55.0},
           {"cooled": True, "end_c": 41.0, "waited_s": 3.0, "start_c": 47.0},
           {"cooled": False, "end_c": 49.5, "waited_s": 120.01, "start_c": 50.0}]
    (warning,) = cooldown_warnings(hot, 45.0)
    assert "up to 52 °C" in warning and "before 2 of 3 trials" in warning and "up to 120.01 s" in warning
    assert cooldown_warnings([{"cooled": True, "end_c": 40.0, "waited_s": 0.0}], 45.0) == []


def test_device_environment_facts_show_no_python_for_benchmark_model():
    from mnetdeploy.report.render import environment_facts

    facts = dict(environment_facts({"python": None, "packages": {"mnetdeploy": "1", "benchmark_model": "sha256:ab"}}))
    assert facts["runtimes"].text == "benchmark_model sha256:ab"
    assert dict(environment_facts({"python": "3.11.2", "packages": {"litert": "2.3"}}))["runtimes"].text == \
        "litert 2.3; Python 3.11.2"


def test_targets_settings_and_the_exit_marker():
    assert parse_target("android:R58M").serial == "R58M"
    ssh = parse_target("ssh://pi@[fe80::1]:2222")
    assert (ssh.kind, ssh.user, ssh.host, ssh.port) == ("ssh", "pi", "fe80::1", 2222)
    for bad in ("ssh://", "iphone", "android:", "ssh://a@b:99999"):
        with pytest.raises(UserError):
            parse_target(bad)
    with pytest.raises(UserError, match="inputs: device benchmarks feed seeded random inputs"):
        DeviceSettings(inputs="images/").check_for_device()
    # The marker survives output without a final newline; its absence means the output was cut.
    assert split_exit_marker("partial" + "__MNETDEPLOY_EXIT=3\n") == (3, "partial")
    assert split_exit_marker("INFO: STARTING!\n") == (None, "INFO: STARTING!\n")
    assert with_exit_marker("echo hi # comment").endswith("\n}; echo __MNETDEPLOY_EXIT=$?")

