"""What the stand-in phone looks like from its own shell: properties, CPUs, clocks, thermal zones, storage.

qemu-user runs the userland's aarch64 code on this x86 host, but it passes file reads straight through, so
without these files a program inside the userland would see the host's x86 /proc/cpuinfo and its 2 cores.
LiteRT's CPU detection (XNNPACK/cpuinfo) aborts on that, and the device-hygiene code (pick big cores by
`cpuinfo_max_freq`, record governors, wait for thermal zones to cool) would have nothing ARM-like to read.
So the userland gets the files a real phone's kernel would show. The default profile is a Google Pixel 2
(Snapdragon 835 / MSM8998): 4 Kryo 280 "silver" cores at 1.9 GHz and 4 "gold" cores at 2.46 GHz, the
device the TFLite benchmark README uses for its `taskset f0` example.

Everything is plain files, rewritten whenever a stand-in device starts, so a test may change a
temperature or a clock (write to the file) and the next device starts from the profile again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Mapping


@dataclasses.dataclass(frozen=True)
class CpuCluster:
    """CPUs sharing one clock domain, as the kernel describes them."""

    first_cpu: int
    count: int
    max_khz: int
    min_khz: int
    cur_khz: int
    midr_part: str          # "CPU part" in /proc/cpuinfo; LiteRT's cpuinfo maps it to a microarchitecture
    midr_variant: str = "0xa"
    midr_revision: int = 4
    governor: str = "schedutil"

    @property
    def cpus(self) -> range:
        return range(self.first_cpu, self.first_cpu + self.count)


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    properties: Mapping[str, str]          # answered by `getprop`
    clusters: tuple[CpuCluster, ...]
    hardware: str                          # the "Hardware" line of /proc/cpuinfo
    thermal_zones: tuple[tuple[str, int], ...]  # (type, millidegrees Celsius)
    mem_total_kb: int
    data_total_kb: int                     # size of the /data partition, as `df` reports it
    data_free_kb: int                      # free space on /data; pushes that do not fit fail like on a full phone
    kernel_version: str

    @property
    def cpu_count(self) -> int:
        return sum(c.count for c in self.clusters)

    def with_properties(self, overrides: Mapping[str, str]) -> "DeviceProfile":
        """A copy with some properties added or replaced: `profile.with_properties({"ro.product.model": "X"})`."""
        return dataclasses.replace(self, properties={**self.properties, **overrides})


PIXEL_2 = DeviceProfile(
    properties={
        "ro.product.model": "Pixel 2",
        "ro.product.name": "walleye",
        "ro.product.device": "walleye",
        "ro.product.brand": "google",
        "ro.product.manufacturer": "Google",
        "ro.product.cpu.abi": "arm64-v8a",
        "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.build.version.release": "11",
        "ro.build.version.sdk": "30",
        "ro.build.id": "RP1A.201005.004.A1",
        "ro.build.fingerprint": "google/walleye/walleye:11/RP1A.201005.004.A1/6934943:user/release-keys",
        "ro.board.platform": "msm8998",
        "ro.hardware": "walleye",
        "ro.soc.manufacturer": "Qualcomm",
        "ro.soc.model": "MSM8998",
    },
    clusters=(
        CpuCluster(first_cpu=0, count=4, max_khz=1900800, min_khz=300000, cur_khz=1056000, midr_part="0x801"),
        CpuCluster(first_cpu=4, count=4, max_khz=2457600, min_khz=300000, cur_khz=1267200, midr_part="0x800"),
    ),
    hardware="Qualcomm Technologies, Inc MSM8998",
    thermal_zones=(
        ("cpu0-silver-usr", 36200),
        ("cpu1-silver-usr", 36500),
        ("cpu2-silver-usr", 36100),
        ("cpu3-silver-usr", 36400),
        ("cpu0-gold-usr", 38100),
        ("cpu1-gold-usr", 38600),
        ("cpu2-gold-usr", 37900),
        ("cpu3-gold-usr", 38300),
        ("gpu0-usr", 34800),
        ("battery", 29000),
        ("xo-therm-adc", 31500),
    ),
    mem_total_kb=3_750_000,
    data_total_kb=53_135_316,
    data_free_kb=43_841_168,
    kernel_version="4.4.223-g9d4e6c2 (android-build@abfarm) #1 SMP PREEMPT",
)


# getprop, df and taskset as the phone's /system/bin has them (shell scripts; see each file's header).
SYSTEM_BIN_SCRIPTS = Path(__file__).resolve().parent / "system_bin"


def _cpu_list(cpus: range) -> str:
    return f"{cpus.start}-{cpus.stop - 1}" if len(cpus) > 1 else str(cpus.start)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def proc_cpuinfo(profile: DeviceProfile) -> str:
    """/proc/cpuinfo as an arm64 Android 4.x kernel prints it (per-CPU blocks, then Hardware)."""
    blocks = ["Processor\t: AArch64 Processor rev 4 (aarch64)"]
    for cluster in profile.clusters:
        for cpu in cluster.cpus:
            blocks.append(
                f"processor\t: {cpu}\n"
                "BogoMIPS\t: 38.40\n"
                "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
                "CPU implementer\t: 0x51\n"
                "CPU architecture: 8\n"
                f"CPU variant\t: {cluster.midr_variant}\n"
                f"CPU part\t: {cluster.midr_part}\n"
                f"CPU revision\t: {cluster.midr_revision}\n"
            )
    return "\n".join(blocks) + f"\nHardware\t: {profile.hardware}\n"


def write_personality(root: str | os.PathLike, profile: DeviceProfile = PIXEL_2) -> None:
    """Write the profile's /proc, /sys, /system/build.prop, /system/bin tools and /standin files under `root`."""
    root = Path(root)
    all_cpus = range(0, profile.cpu_count)

    _write(root / "proc/cpuinfo", proc_cpuinfo(profile))
    _write(root / "proc/meminfo", f"MemTotal:       {profile.mem_total_kb} kB\n"
                                  f"MemFree:        {profile.mem_total_kb // 5} kB\n"
                                  f"MemAvailable:   {profile.mem_total_kb // 2} kB\n")
    _write(root / "proc/version", f"Linux version {profile.kernel_version}\n")

    cpu_dir = root / "sys/devices/system/cpu"
    for name in ("possible", "present", "online"):
        _write(cpu_dir / name, _cpu_list(all_cpus) + "\n")
    _write(cpu_dir / "kernel_max", f"{profile.cpu_count - 1}\n")
    for cluster in profile.clusters:
        siblings = _cpu_list(cluster.cpus)
        for cpu in cluster.cpus:
            d = cpu_dir / f"cpu{cpu}"
            _write(d / "online", "1\n")
            freq = d / "cpufreq"
            _write(freq / "cpuinfo_max_freq", f"{cluster.max_khz}\n")
            _write(freq / "cpuinfo_min_freq", f"{cluster.min_khz}\n")
            _write(freq / "scaling_max_freq", f"{cluster.max_khz}\n")
            _write(freq / "scaling_min_freq", f"{cluster.min_khz}\n")
            _write(freq / "scaling_cur_freq", f"{cluster.cur_khz}\n")
            _write(freq / "scaling_governor", f"{cluster.governor}\n")
            _write(freq / "scaling_available_governors",
                   "interactive conservative ondemand userspace powersave performance schedutil\n")
            _write(freq / "related_cpus", " ".join(map(str, cluster.cpus)) + "\n")
            _write(freq / "affected_cpus", " ".join(map(str, cluster.cpus)) + "\n")
            topo = d / "topology"
            _write(topo / "physical_package_id", f"{profile.clusters.index(cluster)}\n")
            _write(topo / "core_id", f"{cpu - cluster.first_cpu}\n")
            _write(topo / "core_siblings_list", siblings + "\n")
            _write(topo / "thread_siblings_list", f"{cpu}\n")

    thermal = root / "sys/class/thermal"
    for index, (zone_type, millicelsius) in enumerate(profile.thermal_zones):
        zone = thermal / f"thermal_zone{index}"
        _write(zone / "type", zone_type + "\n")
        _write(zone / "temp", f"{millicelsius}\n")
        _write(zone / "mode", "enabled\n")

    _write(root / "system/build.prop",
           "".join(f"{key}={value}\n" for key, value in profile.properties.items()))
    _write(root / "standin/df.conf",
           f"data_total_kb={profile.data_total_kb}\ndata_free_kb={profile.data_free_kb}\n")
    system_bin = root / "system/bin"
    system_bin.mkdir(parents=True, exist_ok=True)
    for script in SYSTEM_BIN_SCRIPTS.iterdir():
        shutil.copyfile(script, system_bin / script.name)
        (system_bin / script.name).chmod(0o755)
    taskset_log = root / "standin/taskset.log"
    if taskset_log.exists():
        taskset_log.unlink()
