"""Device hygiene: what a device is and which state it is in, so its latencies can be trusted and compared.

A phone's latency depends on which cores run the model (big or little), their clock (governor, thermal
throttling) and its temperature. Before measuring, `mnetdeploy bench --device ...`:
- reads every CPU's `cpuinfo_max_freq`, `scaling_cur_freq` and `scaling_governor`, the thermal zones, the load
  average, the memory and (on Android) the properties, in ONE shell round trip (`FACTS_SCRIPT`: shell builtins
  only, no process per file, so it costs the same on a phone as on an emulated one);
- pins the benchmark to the big cores with `taskset MASK` (`big_core_mask`: the cores with the highest
  `cpuinfo_max_freq`, adding the next-fastest cluster while there are fewer cores than threads; Pixel 2: f0);
- waits, before each trial, until the CPU thermal zones are below `--max-temp` or `--cool-timeout` has passed
  (`wait_until_cool`; the wait and whether it cooled are recorded, and a device that stayed hot is a warning);
- records the thermal zones before and after each trial and the clocks after the last one.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

from mnetdeploy.devices import Transport
from mnetdeploy.errors import UserError

# Thermal zone types that measure the CPU (or the SoC die around it). When a device has none of these, every
# zone counts: better a battery or skin sensor than nothing.
CPU_ZONE = re.compile(r"cpu|cluster|soc|tsens|apc|big|little|gold|silver|prime|core|kryo|mtktscpu|x86_pkg",
                      re.IGNORECASE)
POLL_SECONDS = 2.0

_THERMAL_LOOP = (
    'for z in /sys/class/thermal/thermal_zone*; do t=; y=; '
    '[ -r "$z/temp" ] && read -r t < "$z/temp" 2>/dev/null; '
    '[ -r "$z/type" ] && read -r y < "$z/type" 2>/dev/null; '
    'echo "thermal|${z##*thermal_zone}|$t|$y"; done')

FACTS_SCRIPT = "; ".join([
    'echo "uname|$(uname -srm 2>/dev/null)"',
    'if command -v getprop >/dev/null 2>&1; then echo "android|1"; getprop; fi',
    'for c in /sys/devices/system/cpu/cpu[0-9]*; do n=${c##*/cpu}; m=; f=; g=; '
    '[ -r "$c/cpufreq/cpuinfo_max_freq" ] && read -r m < "$c/cpufreq/cpuinfo_max_freq" 2>/dev/null; '
    '[ -r "$c/cpufreq/scaling_cur_freq" ] && read -r f < "$c/cpufreq/scaling_cur_freq" 2>/dev/null; '
    '[ -r "$c/cpufreq/scaling_governor" ] && read -r g < "$c/cpufreq/scaling_governor" 2>/dev/null; '
    'echo "cpu|$n|$m|$f|$g"; done',
    _THERMAL_LOOP,
    '[ -r /proc/loadavg ] && read -r l < /proc/loadavg && echo "loadavg|$l"',
    'if [ -r /proc/meminfo ]; then while read -r k v r; do [ "$k" = MemTotal: ] && echo "memtotal|$v"; '
    'done < /proc/meminfo; fi',
    'if [ -r /proc/cpuinfo ]; then while IFS= read -r line; do case "$line" in '
    'Hardware*|"model name"*|Model*|Features*|flags*) echo "cpuinfo|$line";; esac; done < /proc/cpuinfo; fi',
    # Linux boards name themselves in the device tree ("Radxa ROCK Pi 4B"), not in /proc/cpuinfo.
    'for f in /proc/device-tree/model /sys/firmware/devicetree/base/model; do '
    'if [ -r "$f" ]; then read -r m < "$f" 2>/dev/null; echo "dtmodel|$m"; break; fi; done',
    'for t in taskset sha256sum python3 df; do command -v $t >/dev/null 2>&1 && echo "has|$t"; done',
    'true',
])

_PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")

# Android ABI names and `uname -m` values, by the ELF machine that runs natively on them.
ABI_MACHINES = {"arm64-v8a": "aarch64", "armeabi-v7a": "arm", "armeabi": "arm", "x86_64": "x86_64", "x86": "x86",
                "riscv64": "riscv64"}
UNAME_MACHINES = {"aarch64": ("aarch64",), "arm64": ("aarch64",), "armv8l": ("arm",), "armv7l": ("arm",),
                  "armv6l": ("arm",), "x86_64": ("x86_64", "x86"), "i686": ("x86",), "riscv64": ("riscv64",)}


@dataclasses.dataclass
class Cpu:
    index: int
    max_khz: int | None
    cur_khz: int | None
    governor: str | None


@dataclasses.dataclass
class DeviceFacts:
    """What one `FACTS_SCRIPT` round trip says about a device."""

    uname: str                                  # "Linux 4.4.223 aarch64"
    android: bool
    properties: dict[str, str]
    cpus: dict[int, Cpu]
    thermal: dict[str, float]                   # zone "type (N)" -> degrees Celsius
    load_average: list[float] | None
    mem_total_kb: int | None
    cpuinfo: dict[str, str]                     # Hardware / model name / Model / Features|flags of /proc/cpuinfo
    tools: set[str]                             # which of taskset, sha256sum, python3, df exist
    board_model: str | None = None              # the device tree's model (Linux boards)

    @property
    def machine(self) -> str:
        return self.uname.split()[-1] if self.uname else ""

    def abis(self) -> list[str]:
        """Android ABIs the device runs (abilist, else abi), most preferred first; [] when not Android."""
        listed = [a for a in self.properties.get("ro.product.cpu.abilist", "").split(",") if a]
        single = self.properties.get("ro.product.cpu.abi")
        return listed or ([single] if single else [])

    def native_machines(self) -> list[str]:
        """ELF machines the device runs: from the Android ABIs, else from `uname -m`."""
        machines = [ABI_MACHINES[a] for a in self.abis() if a in ABI_MACHINES]
        if not machines:
            machines = list(UNAME_MACHINES.get(self.machine, (self.machine,) if self.machine else ()))
        return list(dict.fromkeys(machines))

    def soc(self) -> str | None:
        props = self.properties
        if props.get("ro.soc.model"):
            maker = props.get("ro.soc.manufacturer")
            return f"{maker} {props['ro.soc.model']}" if maker and maker not in props["ro.soc.model"] else \
                props["ro.soc.model"]
        return (props.get("ro.board.platform") or self.cpuinfo.get("Hardware") or self.cpuinfo.get("Model")
                or self.board_model or self.cpuinfo.get("model name") or None)

    def cpu_features(self) -> dict[str, Any] | None:
        """The int8-relevant instruction-set features from the device's /proc/cpuinfo (mnetdeploy/cpu.py)."""
        from mnetdeploy.cpu import features_from_flags

        words = self.cpuinfo.get("Features") or self.cpuinfo.get("flags")
        if not words or not self.machine:
            return None
        return features_from_flags(self.machine, set(words.split())).to_dict()


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def celsius(raw: str) -> float | None:
    """A thermal zone's `temp` in degrees Celsius: millidegrees as the kernel documents, or plain degrees on the
    devices that print those. Readings no CPU can have (disabled zones print 0 or -273000) are dropped."""
    value = _int(raw)
    if value is None:
        return None
    degrees = value / 1000.0 if abs(value) >= 1000 else float(value)
    return round(degrees, 1) if 0 < degrees < 150 else None


def parse_thermal(lines: list[str]) -> dict[str, float]:
    """Zone "type (N)" -> degrees Celsius, in zone order (the shell's glob puts thermal_zone10 before 2)."""
    zones = []
    for line in lines:
        parts = line.split("|")
        if len(parts) == 4 and parts[0] == "thermal" and parts[1].isdigit():
            degrees = celsius(parts[2])
            if degrees is not None:
                zones.append((int(parts[1]), f"{parts[3].strip() or 'zone'} ({parts[1]})", degrees))
    return {name: degrees for _, name, degrees in sorted(zones)}


def parse_facts(text: str) -> DeviceFacts:
    lines = text.splitlines()
    facts = DeviceFacts(uname="", android=False, properties={}, cpus={}, thermal=parse_thermal(lines),
                        load_average=None, mem_total_kb=None, cpuinfo={}, tools=set())
    for line in lines:
        if match := _PROP.match(line.strip()):
            facts.properties[match.group(1)] = match.group(2)
            continue
        key, _, value = line.partition("|")
        if key == "uname":
            facts.uname = value.strip()
        elif key == "android":
            facts.android = True
        elif key == "cpu":
            parts = value.split("|")
            if len(parts) == 4 and parts[0].isdigit():
                n = int(parts[0])
                facts.cpus[n] = Cpu(n, _int(parts[1]), _int(parts[2]), parts[3].strip() or None)
        elif key == "loadavg":
            try:
                facts.load_average = [float(x) for x in value.split()[:3]]
            except ValueError:
                pass
        elif key == "memtotal":
            facts.mem_total_kb = _int(value)
        elif key == "cpuinfo":
            name, _, info = value.partition(":")
            facts.cpuinfo.setdefault(name.strip(), info.strip())
        elif key == "dtmodel":
            facts.board_model = value.strip().strip("\x00") or None
        elif key == "has":
            facts.tools.add(value.strip())
    return facts


def read_facts(transport: Transport) -> DeviceFacts:
    return parse_facts(transport.check(FACTS_SCRIPT, 60.0, "reading the device's CPUs and sensors").stdout)


# ----------------------------------------------------------------------------------------------- pinning

@dataclasses.dataclass(frozen=True)
class Pinning:
    mask: int | None                 # None: not pinned
    source: str                      # how the mask was chosen, for the result

    @property
    def hex(self) -> str | None:
        return None if self.mask is None else f"{self.mask:x}"

    @property
    def cpus(self) -> list[int]:
        return [] if self.mask is None else [i for i in range(self.mask.bit_length()) if self.mask >> i & 1]


def big_core_mask(cpus: dict[int, Cpu], threads: int) -> Pinning:
    """The fastest cluster (highest cpuinfo_max_freq), plus the next-fastest while fewer cores than threads."""
    by_freq: dict[int, list[int]] = {}
    for cpu in cpus.values():
        if cpu.max_khz:
            by_freq.setdefault(cpu.max_khz, []).append(cpu.index)
    if not by_freq:
        return Pinning(None, "not pinned: the device exposes no cpufreq (cpuinfo_max_freq)")
    chosen: list[int] = []
    clusters = []
    for freq in sorted(by_freq, reverse=True):
        chosen += by_freq[freq]
        clusters.append(f"{len(by_freq[freq])} @ {freq / 1e6:g} GHz")
        if len(chosen) >= threads:
            break
    if len(chosen) == len([c for c in cpus.values() if c.max_khz]) and len(by_freq) > 1:
        source = "all cores: more threads than big cores"
    else:
        source = "big cores (" + ", ".join(clusters) + ")"
    return Pinning(sum(1 << i for i in chosen), source)


def parse_cpu_mask(text: str, cpus: dict[int, Cpu]) -> Pinning:
    """`--cpu-mask` (hex like taskset's, or "none"), checked against the device's CPUs."""
    if text.strip().lower() == "none":
        return Pinning(None, "not pinned: --cpu-mask none")
    digits = text.strip().lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]+", digits) or int(digits, 16) == 0:
        raise UserError(f"cpu_mask {text!r}: expected a non-zero hex CPU mask like taskset's (f0 = CPUs 4-7), "
                        "or none")
    mask = int(digits, 16)
    if cpus:
        unknown = [i for i in range(mask.bit_length()) if mask >> i & 1 and i not in cpus]
        if unknown:
            raise UserError(f"cpu_mask {text!r}: the device has no CPU {', '.join(map(str, unknown))} "
                            f"(it has {min(cpus)}-{max(cpus)})")
    return Pinning(mask, "--cpu-mask")


def cpufreq_record(cpus: dict[int, Cpu], only: list[int] | None = None) -> dict[str, Any]:
    """Governor and clocks in the host environment's shape (mnetdeploy/bench/environment.py cpu_frequency)."""
    per_cpu = {str(c.index): {"governor": c.governor,
                              "cur_mhz": round(c.cur_khz / 1000) if c.cur_khz else None,
                              "max_mhz": round(c.max_khz / 1000) if c.max_khz else None}
               for c in sorted(cpus.values(), key=lambda c: c.index) if not only or c.index in only}
    governors = sorted({v["governor"] for v in per_cpu.values() if v["governor"]})
    return {"governor": governors[0] if len(governors) == 1 else (governors or None), "per_cpu": per_cpu or None}


# ----------------------------------------------------------------------------------------------- thermal

def cpu_zones(zones: dict[str, float]) -> dict[str, float]:
    """The zones that say how hot the CPU is (all zones when none is recognisably a CPU one)."""
    cpu = {name: t for name, t in zones.items() if CPU_ZONE.search(name)}
    return cpu or zones


def read_thermal(transport: Transport) -> dict[str, float]:
    result = transport.check(_THERMAL_LOOP + "; true", 30.0, "reading the thermal zones")
    return parse_thermal(result.stdout.splitlines())


@dataclasses.dataclass
class CoolDown:
    waited_s: float
    start_c: float | None            # hottest CPU zone when the wait began
    end_c: float | None              # ... when it ended
    cooled: bool | None              # None: no thermal zone to read
    zones: dict[str, float]          # every zone at the end of the wait (the "before" reading of a trial)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def wait_until_cool(read: Callable[[], dict[str, float]], max_temp: float, timeout: float,
                    poll: float = POLL_SECONDS, sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> CoolDown:
    """Poll the thermal zones until the hottest CPU zone is at or below `max_temp`, for at most `timeout` s."""
    start = clock()
    zones = read()
    hottest = max(cpu_zones(zones).values(), default=None)
    first = hottest
    while hottest is not None and hottest > max_temp and clock() - start < timeout:
        sleep(max(0.0, min(poll, timeout - (clock() - start))))
        zones = read()
        hottest = max(cpu_zones(zones).values(), default=None)
    cooled = None if hottest is None else hottest <= max_temp
    return CoolDown(round(clock() - start, 2), first, hottest, cooled, zones)
