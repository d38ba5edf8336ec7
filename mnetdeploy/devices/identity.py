"""Which device a result came from, asked of the device itself: for cache keys and for every device result.

    from mnetdeploy.devices import device_identity
    device_identity("android:R58M123ABC", benchmark_binary="android_aarch64_benchmark_model")
    -> {"kind": "android", "label": "android:R58M123ABC", "serial": "R58M123ABC",
        "fingerprint": "google/walleye/walleye:11/RP1A.../6934943:user/release-keys", "soc": "Qualcomm MSM8998",
        "abi": "arm64-v8a", "machine": "aarch64", "os_release": None, "uname": None, "model": "Pixel 2",
        "benchmark_binary_sha256": "…"}

Only facts that stay the same while the device does (no temperatures, clocks or load): two calls on one device
give equal dicts, a re-flashed phone (new fingerprint), another board (other uname/os-release/SoC) or another
binary gives a different one. Android: ro.build.fingerprint, ro.soc.model (else ro.board.platform), ro.product.cpu.abi.
Linux boards: /etc/os-release (PRETTY_NAME, else NAME VERSION_ID), `uname -srvm`, the SoC from /proc/cpuinfo's
Hardware line or the device tree's model. The serial (adb) or the ssh destination names the unit.
"""

from __future__ import annotations

from typing import Any

from mnetdeploy.devices import Transport

# One round trip, shell builtins and the tools every device has (getprop on Android, uname elsewhere).
IDENTITY_SCRIPT = "; ".join([
    'if command -v getprop >/dev/null 2>&1; then echo "android|1"; '
    'for p in ro.build.fingerprint ro.soc.manufacturer ro.soc.model ro.board.platform ro.hardware '
    'ro.product.cpu.abi ro.product.model; do echo "prop|$p|$(getprop $p)"; done; fi',
    'echo "uname|$(uname -srvm 2>/dev/null)"',
    'echo "machine|$(uname -m 2>/dev/null)"',
    'if [ -r /etc/os-release ]; then while IFS= read -r line; do echo "osr|$line"; done < /etc/os-release; fi',
    'if [ -r /proc/cpuinfo ]; then while IFS= read -r line; do case "$line" in Hardware*) echo "cpuinfo|$line";; '
    'esac; done < /proc/cpuinfo; fi',
    'for f in /proc/device-tree/model /sys/firmware/devicetree/base/model; do '
    'if [ -r "$f" ]; then read -r m < "$f" 2>/dev/null; echo "dtmodel|$m"; break; fi; done',
    'true',
])


def parse_identity(text: str) -> dict[str, Any]:
    """The raw facts of IDENTITY_SCRIPT's output: android, props, uname, machine, os_release, hardware, dtmodel."""
    facts: dict[str, Any] = {"android": False, "props": {}, "uname": "", "machine": "", "os_release": {},
                             "hardware": None, "dtmodel": None}
    for line in text.splitlines():
        key, _, value = line.partition("|")
        if key == "android":
            facts["android"] = True
        elif key == "prop":
            name, _, prop = value.partition("|")
            if prop.strip():
                facts["props"][name] = prop.strip()
        elif key in ("uname", "machine"):
            facts[key] = value.strip()
        elif key == "osr" and "=" in value:
            name, _, val = value.partition("=")
            facts["os_release"][name.strip()] = val.strip().strip('"\'')
        elif key == "cpuinfo":
            facts["hardware"] = value.partition(":")[2].strip() or None
        elif key == "dtmodel":
            facts["dtmodel"] = value.strip().strip("\x00") or None
    return facts


def identity_from(transport: Transport, facts: dict[str, Any], binary_sha256: str | None) -> dict[str, Any]:
    props = facts["props"]
    android = facts["android"]
    if android:
        model = props.get("ro.soc.model")
        maker = props.get("ro.soc.manufacturer")
        soc = (f"{maker} {model}" if maker and maker not in model else model) if model else \
            props.get("ro.board.platform") or props.get("ro.hardware")
    else:
        soc = facts["hardware"] or facts["dtmodel"]
    osr = facts["os_release"]
    os_release = None if android else (osr.get("PRETTY_NAME") or
                                       " ".join(filter(None, (osr.get("NAME"), osr.get("VERSION_ID")))) or None)
    described = transport.describe()
    return {
        "kind": "android" if android else ("ssh" if described.get("transport") == "ssh" else "adb-linux"),
        "label": transport.label,
        "serial": described.get("serial"),
        "destination": described.get("destination"),
        "port": described.get("port"),
        "fingerprint": props.get("ro.build.fingerprint") if android else None,
        "model": props.get("ro.product.model") if android else facts["dtmodel"],
        "soc": soc or None,
        "abi": props.get("ro.product.cpu.abi") if android else None,
        "machine": facts["machine"] or None,
        "os_release": os_release,
        "uname": None if android else facts["uname"] or None,
        "benchmark_binary_sha256": binary_sha256,
    }


def read_identity(transport: Transport, binary_sha256: str | None = None) -> dict[str, Any]:
    """The identity of the device behind an open transport (one round trip)."""
    facts = parse_identity(transport.check(IDENTITY_SCRIPT, 60.0, "reading the device's identity").stdout)
    if transport.label.startswith("android:") and not facts["android"]:
        transport.label = transport.label.replace("android:", "adb-linux:", 1)  # no getprop: not Android
    return identity_from(transport, facts, binary_sha256)


__all__ = ["IDENTITY_SCRIPT", "identity_from", "parse_identity", "read_identity"]
