"""`mnetdeploy run` and `sweep` benchmark on devices from a config alone (device settings live in the config).

The Android stand-in (real adb client and server, arm64 userland under qemu, benchmark_model stand-in running
real aarch64 LiteRT) and the same device without getprop (an adb-linux board, the Python runner). Timings
under emulation mean nothing; what is tested is that the results come from the device named in the config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mnetdeploy.cli import cli

pytestmark = pytest.mark.slow
STANDIN_BINARY = Path(__file__).resolve().parent / "device_standin" / "benchmark_model_standin.py"
BOARD_DF = ("Filesystem     1K-blocks    Used Available Use% Mounted on\n"
            "/dev/root       30000000 9000000  21000000  30% /\n")


def device_config(path: Path, session, device: str, **bench) -> Path:
    """A config that says everything: the model, what to export and where and how to benchmark it."""
    port = session.env["ANDROID_ADB_SERVER_PORT"]
    path.write_text(yaml.safe_dump({
        "output": str(path.parent / "artifacts"),
        "model": {"arch": "v1", "alpha": 0.25, "resolution": 96, "classes": 10},
        "quantize": {"formats": ["tflite"], "precisions": ["fp32"], "num_calib": 4},
        "bench": {"devices": [device], "adb_server": f"127.0.0.1:{port}", "runs": 3, "warmup": 1,
                  "min_seconds": 0, "max_temp": 90, **bench},
        "sweep": {"alphas": [0.25], "resolutions": [96], "out": str(path.parent / "sweep")},
    }))
    return path


def invoke(session, *args: str):
    # Only the adb key's HOME comes from the environment; the server, serial and binary come from the config.
    return CliRunner().invoke(cli, list(args), env={"HOME": session.env["HOME"], "ANDROID_ADB_SERVER_PORT": None,
                                                     "ANDROID_SERIAL": None, "ADB": None})


def test_run_reuses_a_device_result_only_for_the_same_device_and_fails_when_it_is_gone(adb_standin_factory,
                                                                                      tmp_path):
    """`run` benchmarks on the phone its config names (issue 12); the bench step's cache key holds the device's
    identity, so another phone is measured afresh and a missing one is an error (issue 13.1)."""
    from device_standin.device_profile import PIXEL_2

    first = adb_standin_factory(arm64=True)
    config = device_config(tmp_path / "phone.yaml", first, "android", benchmark_binary=str(STANDIN_BINARY))
    result = invoke(first, "run", str(config), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert next(s for s in data["steps"] if s["name"] == "bench")["status"] == "ran"
    (record,) = json.loads((Path(data["artifact_dir"]) / "results" / "bench.json").read_text())
    assert record["device"] == f"android:{first.serial}" and record["runtime"] == "benchmark_model"
    assert record["execution"]["parameters"]["Stand-in machine"] == "aarch64"   # ran on the device, as ARM code

    def bench_step(session):
        result = invoke(session, "run", str(config), "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        step = next(s for s in data["steps"] if s["name"] == "bench")
        devices = {r["device"] for r in json.loads((Path(data["artifact_dir"]) / "results" / "bench.json")
                                                   .read_text())}
        return step["status"], devices

    assert bench_step(first) == ("reused", {f"android:{first.serial}"})
    # Another phone (another serial and build) behind the configured adb server: measured afresh.
    other = adb_standin_factory(arm64=True, profile=PIXEL_2.with_properties(
        {"ro.build.fingerprint": "google/walleye/walleye:11/RP1A.999/1:user/release-keys"}))
    device_config(config, other, "android", benchmark_binary=str(STANDIN_BINARY))
    status, devices = bench_step(other)
    assert status == "ran" and f"android:{other.serial}" in devices
    # No device at all: an error naming the device, never the cached numbers.
    other.adb("kill-server", serial=False, timeout=15)
    other.device.stop()
    gone = invoke(other, "run", str(config))
    assert gone.exit_code == 2, gone.output
    error = gone.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "adb" in error, error
    assert "... bench" in gone.stderr and "... report" not in gone.stderr   # stopped at bench, nothing after


def test_sweep_benchmarks_on_an_adb_linux_board_from_the_config(adb_standin_arm64, tmp_path):
    session = adb_standin_arm64
    session.host_path("/system/bin/getprop").unlink()                 # no Android: a Linux board over adb
    session.host_path("/system/bin/df").write_text(BOARD_DF)
    config = device_config(tmp_path / "board.yaml", session, "adb-linux")
    result = invoke(session, "sweep", str(config), "--json")
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    (row,) = state["rows"]
    assert row["device"] == "adb-linux" and row["precision"] == "fp32" and row["p50_ms"] > 0
    point = next(iter(state["points"].values()))
    results = json.loads((Path(point["artifact_dir"]) / "results" / "bench.json").read_text())
    assert [r["device"] for r in results] == [f"adb-linux:{session.serial}"]
    assert results[0]["environment"]["machine"] == "aarch64"


def pool_config(path: Path, sessions, **sweep) -> Path:
    """Two stand-in phones, each behind its own adb server (android@HOST:PORT), as one pool."""
    devices = [f"android@127.0.0.1:{s.env['ANDROID_ADB_SERVER_PORT']}" for s in sessions]
    path.write_text(yaml.safe_dump({
        "model": {"arch": "v1", "alpha": 0.25, "classes": 10},
        "quantize": {"formats": ["tflite"], "precisions": ["fp32"], "num_calib": 4},
        "bench": {"devices": devices, "pool": True, "benchmark_binary": str(STANDIN_BINARY), "runs": 3,
                  "warmup": 1, "min_seconds": 0, "max_temp": 90},
        "sweep": {"alphas": [0.25], "out": str(path.parent / "sweep"), **sweep},
    }))
    return path


def test_a_pool_of_two_phones_on_two_adb_servers_shares_the_points(adb_standin_factory, tmp_path):
    first, second = adb_standin_factory(arm64=True), adb_standin_factory(arm64=True)
    config = pool_config(tmp_path / "pool.yaml", [first, second], resolutions=[96, 128])
    result = invoke(first, "sweep", str(config), "--json")
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    rows = state["rows"]
    assert sorted(r["point"] for r in rows) == ["v1_0.25_128_c10", "v1_0.25_96_c10"]  # each point once
    assert {r["device"] for r in rows} == {"android pool: Pixel 2"}
    measured_on = {r["measured_on"] for r in rows}
    assert measured_on <= {f"android@127.0.0.1:{s.env['ANDROID_ADB_SERVER_PORT']}" for s in (first, second)}
    report = state["devices"]
    assert sum(d["points"] for d in report.values()) == 2 and all(d["status"] == "ok" for d in report.values())


def test_a_phone_that_drops_out_leaves_its_points_to_the_pool(adb_standin_factory, tmp_path):
    steady = adb_standin_factory(arm64=True)
    # Answers the identity check and the start of its first benchmark, then is unplugged mid-run. (The two
    # stand-ins share one userland, so the lock the lost run leaves behind is in the steady one's way too: it is
    # recognised as this process's ended run, not waited for.)
    flaky = adb_standin_factory(arm64=True, disappear_at_command=6)
    config = pool_config(tmp_path / "pool.yaml", [steady, flaky], resolutions=[96, 128])
    result = invoke(steady, "sweep", str(config), "--json")
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    assert sorted(r["point"] for r in state["rows"]) == ["v1_0.25_128_c10", "v1_0.25_96_c10"]
    steady_label = f"android@127.0.0.1:{steady.env['ANDROID_ADB_SERVER_PORT']}"
    flaky_label = f"android@127.0.0.1:{flaky.env['ANDROID_ADB_SERVER_PORT']}"
    assert {r["measured_on"] for r in state["rows"]} == {steady_label}
    assert state["devices"][flaky_label]["status"].startswith("dropped")
    assert state["devices"][steady_label]["points"] == 2
