"""The CPU features that decide int8 speed and numerics (mnetdeploy/cpu.py), the ONNX Runtime session setting
chosen from them (runtimes/onnx.py), and the "int8 is no faster here" note (bench/int8_speed.py).

CPUID is read natively and under `qemu-x86_64-static -cpu Haswell` (an AVX2-only CPU), so both answers are
checked on any x86-64 machine the suite runs on."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from emulated_cpu import CPU, EMULATOR
from mnetdeploy.cpu import (X86_FEATURES, CpuFeatures, features_from_flags, from_dict, host_cpu,
                            parse_cpuinfo_flags)

X86 = platform.machine() in ("x86_64", "AMD64")
# /proc/cpuinfo of a Pixel 6 (Cortex-X1/A76/A55: dotprod, no i8mm) and of a Cortex-A53 board (neither).
PIXEL6 = "processor\t: 0\nBogoMIPS\t: 49.15\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp " \
         "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
A53 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"


@pytest.mark.skipif(not X86, reason="CPUID is x86")
def test_cpuid_agrees_with_the_kernels_flags():
    """Natively, what CPUID (with the OS's XCR0) says equals what the kernel lists in /proc/cpuinfo."""
    flags = parse_cpuinfo_flags(Path("/proc/cpuinfo").read_text())
    cpu = host_cpu()
    assert cpu.source == "cpuid"
    assert {f: cpu.has(f) for f in X86_FEATURES} == {f: f in flags for f in X86_FEATURES}


@pytest.mark.skipif(not X86 or EMULATOR is None, reason="needs x86-64 and qemu-x86_64-static (make system)")
def test_an_avx2_only_cpu_is_seen_as_one_and_gets_exact_onnx_int8_kernels():
    code = ("import json; from mnetdeploy.cpu import host_cpu; from mnetdeploy.runtimes.onnx import session_config;"
            "print(json.dumps([host_cpu().to_dict(), session_config()]))")
    out = subprocess.run([EMULATOR, "-cpu", CPU, sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    import json

    record, config = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["source"] == "cpuid"
    assert record["features"] == {"avx2": True, "avx512f": False, "avx512bw": False, "avx512_vnni": False,
                                  "avx_vnni": False, "amx_int8": False}
    assert record["int8_dot_product"] is False and record["u8s8_saturates"] is True
    assert config == {"session.x64quantprecision": "1"}


@pytest.mark.parametrize("present, saturates", [
    (("avx2",), True),                                   # AMD Zen 1-3, Intel Haswell..Coffee Lake
    (("avx2", "avx512f", "avx512bw"), True),             # Skylake-SP: AVX-512 without VNNI still saturates
    (("avx2", "avx512f", "avx512bw", "avx512_vnni"), False),  # Ice Lake, Zen 4
    (("avx2", "avx_vnni"), False),                       # Alder Lake client
    (("avx2", "avx512f", "avx512_vnni", "amx_int8"), False),  # Sapphire Rapids
])
def test_which_x86_cpus_saturate_u8s8(present, saturates):
    cpu = CpuFeatures("x86_64", "cpuid", present)
    assert cpu.u8s8_saturates is saturates and cpu.int8_dot_product is (not saturates)
    assert ("no int8 dot-product" in cpu.int8_speed_note()) is saturates


def test_arm_features_from_a_devices_cpuinfo():
    pixel = features_from_flags("aarch64", parse_cpuinfo_flags(PIXEL6))
    assert pixel.present == ("asimd", "asimddp") and pixel.int8_dot_product and not pixel.u8s8_saturates
    a53 = features_from_flags("aarch64", parse_cpuinfo_flags(A53))
    assert a53.present == ("asimd",) and not a53.int8_dot_product
    assert "asimddp" in a53.int8_speed_note()
    assert from_dict(pixel.to_dict()) == pixel


def _result(name: str, precision: str, p50: float, features: dict | None, device: str = "host") -> dict:
    return {"model": f"/a/v2/{name}", "format": "tflite", "precision": precision, "device": device,
            "runtime": "litert", "xnnpack": True, "threads": 1, "latency_ms": {"p50": p50},
            "environment": {"cpu_features": features}}


def test_int8_no_faster_than_fp32_is_said_with_the_reason():
    from mnetdeploy.bench.int8_speed import int8_speed_notes

    avx2 = CpuFeatures("x86_64", "cpuid", ("avx2",)).to_dict()
    vnni = CpuFeatures("x86_64", "cpuid", ("avx2", "avx512f", "avx512_vnni")).to_dict()
    same = [_result("model_fp32.tflite", "fp32", 10.0, avx2), _result("model_int8.tflite", "int8", 10.2, avx2)]
    (note,) = int8_speed_notes(same)
    assert note.startswith("model_int8.tflite: int8 is no faster than fp32 on this CPU (0.98x")
    assert "no int8 dot-product instruction" in note and "4x smaller" in note
    faster = [_result("model_fp32.tflite", "fp32", 10.0, vnni), _result("model_int8.tflite", "int8", 5.6, vnni)]
    assert int8_speed_notes(faster) == []
    slow_vnni = [_result("model_fp32.tflite", "fp32", 10.0, vnni), _result("model_int8.tflite", "int8", 9.5, vnni)]
    (note,) = int8_speed_notes(slow_vnni)
    assert "has an int8 dot product (avx512_vnni)" in note and "gains little" in note
    # No fp32 twin measured with the same settings: nothing to say.
    other_threads = dict(same[0], threads=2)
    assert int8_speed_notes([other_threads, same[1]]) == []
