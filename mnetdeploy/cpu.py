"""The host CPU's instruction-set features that decide int8 speed and int8 numerics.

Int8 kernels differ between CPUs in speed *and* in arithmetic:
- x86 without a VNNI dot product (AVX2-only CPUs such as AMD Zen 1-3, Intel before Ice Lake) multiplies
  u8 x s8 pairs with `vpmaddubsw`, whose 16-bit pair sums saturate. ONNX Runtime's default U8S8 kernels do
  that; on the pretrained v1 0.25 they lose 6.5 top-1 points there. Its session option
  `session.x64quantprecision=1` switches to exact U8U8 kernels (see runtimes/onnx.py).
- AVX512-VNNI, AVX-VNNI (`vpdpbusd`) and AMX accumulate in 32 bits: exact, and much faster in int8.
- ARM: the dot-product extension (asimddp, `sdot`) and i8mm (`smmla`) make int8 fast; without them
  XNNPACK widens to 16 bits (exact, but int8 is then barely faster than fp32).

Features are read with CPUID itself on x86-64 (a few bytes of machine code called through ctypes), which is
what ONNX Runtime's MLAS and XNNPACK read to choose their kernels, so the answer also holds under
`qemu-x86_64-static -cpu Haswell`, where /proc/cpuinfo still shows the real host. Elsewhere (ARM) the
kernel's /proc/cpuinfo feature list is read. Everything unreadable is reported as such, never guessed.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

X86_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FEATURES = ("asimd", "asimddp", "i8mm", "sve", "sme")
X86_VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")   # a 32-bit-accumulating int8 dot product
ARM_DOT = ("asimddp", "i8mm")


@dataclass(frozen=True)
class CpuFeatures:
    arch: str                      # platform.machine(): x86_64, aarch64, ...
    source: str                    # how they were read: cpuid | /proc/cpuinfo | unknown
    present: tuple[str, ...]       # the features of X86_FEATURES / ARM_FEATURES this CPU has

    @property
    def x86(self) -> bool:
        return _is_x86(self.arch)

    def has(self, name: str) -> bool:
        return name in self.present

    @property
    def int8_dot_product(self) -> bool:
        """An int8 dot-product instruction that accumulates in 32 bits (what makes int8 fast)."""
        return any(self.has(f) for f in (X86_VNNI if self.x86 else ARM_DOT))

    @property
    def u8s8_saturates(self) -> bool:
        """x86 CPUs whose u8 x s8 int8 kernels go through 16-bit saturating pair sums (no VNNI)."""
        return self.x86 and self.source != "unknown" and not self.int8_dot_product

    def summary(self) -> str:
        """One line for tables and messages, e.g. 'x86_64 avx2 avx512f avx512_vnni'."""
        return " ".join([self.arch, *self.present]) if self.present else f"{self.arch} (features {self.source})"

    def int8_speed_note(self) -> str:
        """Why int8 may not beat fp32 here, from the features alone."""
        if self.int8_dot_product:
            names = ", ".join(f for f in (X86_VNNI if self.x86 else ARM_DOT) if self.has(f))
            return f"this CPU has an int8 dot product ({names})"
        if self.x86:
            return ("this CPU has no int8 dot-product instruction (no AVX512-VNNI, AVX-VNNI or AMX): int8 "
                    "kernels widen to 16 bits and run at about the speed of fp32; int8 buys size (4x smaller), "
                    "not speed, here")
        return ("this CPU has no int8 dot-product instruction (no asimddp/i8mm): int8 kernels widen to 16 bits "
                "and gain little over fp32")

    def to_dict(self) -> dict[str, Any]:
        names = X86_FEATURES if self.x86 else ARM_FEATURES
        return {"arch": self.arch, "source": self.source,
                "features": {n: self.has(n) for n in names} if self.source != "unknown" else None,
                "int8_dot_product": self.int8_dot_product if self.source != "unknown" else None,
                "u8s8_saturates": self.u8s8_saturates}


@functools.lru_cache(maxsize=1)
def host_cpu() -> CpuFeatures:
    """This process's CPU (cached: it does not change while we run)."""
    arch = platform.machine() or "unknown"
    if _is_x86(arch):
        try:
            return CpuFeatures(arch, "cpuid", tuple(f for f in X86_FEATURES if f in _x86_cpuid_features()))
        except (OSError, ValueError, AttributeError):
            pass  # no executable memory (hardened kernels): fall back to what the kernel says
    flags = _proc_cpuinfo_flags()
    return CpuFeatures(arch, "unknown", ()) if flags is None else features_from_flags(arch, flags)


def from_dict(record: dict[str, Any] | None) -> CpuFeatures | None:
    """The inverse of `to_dict` (for results read back from JSON)."""
    if not record:
        return None
    present = tuple(k for k, v in (record.get("features") or {}).items() if v)
    return CpuFeatures(record.get("arch") or "unknown", record.get("source") or "unknown", present)


def features_from_flags(arch: str, flags: set[str]) -> CpuFeatures:
    """Features of another machine (a device) from its /proc/cpuinfo flags."""
    names = X86_FEATURES if _is_x86(arch) else ARM_FEATURES
    return CpuFeatures(arch, "/proc/cpuinfo", tuple(n for n in names if n in flags))


def _is_x86(arch: str) -> bool:
    return arch.lower() in ("x86_64", "amd64")


def parse_cpuinfo_flags(text: str) -> set[str]:
    """The feature words of a /proc/cpuinfo text (x86 `flags`, ARM `Features`)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def _proc_cpuinfo_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = parse_cpuinfo_flags(text)
    return flags or None


# ------------------------------------------------------------------------------------------- x86 CPUID

# cpuid(leaf, subleaf, uint32 out[4]) and xgetbv(0) for the System V x86-64 ABI (Linux, macOS).
_CPUID_CODE = bytes([
    0x53,                          # push rbx            (callee-saved, cpuid clobbers it)
    0x49, 0x89, 0xD0,              # mov  r8, rdx        (out)
    0x89, 0xF8,                    # mov  eax, edi       (leaf)
    0x89, 0xF1,                    # mov  ecx, esi       (subleaf)
    0x0F, 0xA2,                    # cpuid
    0x41, 0x89, 0x00,              # mov  [r8], eax
    0x41, 0x89, 0x58, 0x04,        # mov  [r8+4], ebx
    0x41, 0x89, 0x48, 0x08,        # mov  [r8+8], ecx
    0x41, 0x89, 0x50, 0x0C,        # mov  [r8+12], edx
    0x5B,                          # pop  rbx
    0xC3,                          # ret
])
_XGETBV_CODE = bytes([
    0x31, 0xC9,                    # xor  ecx, ecx
    0x0F, 0x01, 0xD0,              # xgetbv              (edx:eax = XCR0)
    0x48, 0xC1, 0xE2, 0x20,        # shl  rdx, 32
    0x48, 0x09, 0xD0,              # or   rax, rdx
    0xC3,                          # ret
])


def _x86_cpuid_features() -> set[str]:
    import ctypes
    import mmap

    if platform.system() == "Windows":
        raise OSError("CPUID through mmap is POSIX-only")
    memory = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    memory.write(_CPUID_CODE + b"\x90" * (64 - len(_CPUID_CODE)) + _XGETBV_CODE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    regs_t = ctypes.c_uint32 * 4
    cpuid_fn = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(regs_t))(base)
    xgetbv_fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(base + 64)
    try:
        def cpuid(leaf: int, sub: int = 0) -> tuple[int, int, int, int]:
            regs = regs_t()
            cpuid_fn(leaf, sub, ctypes.byref(regs))
            return regs[0], regs[1], regs[2], regs[3]

        max_leaf = cpuid(0)[0]
        _, _, ecx1, _ = cpuid(1)
        osxsave = bool(ecx1 >> 27 & 1)
        xcr0 = int(xgetbv_fn()) if osxsave else 0
        avx_os = xcr0 & 0x6 == 0x6                  # XMM and YMM state saved by the OS
        avx512_os = avx_os and xcr0 & 0xE0 == 0xE0  # opmask, ZMM_Hi256, Hi16_ZMM
        amx_os = xcr0 & 0x60000 == 0x60000          # XTILECFG, XTILEDATA
        found: set[str] = set()
        if max_leaf >= 7:
            _, ebx7, ecx7, edx7 = cpuid(7, 0)
            eax71 = cpuid(7, 1)[0]
            bits = {"avx2": (ebx7 >> 5, avx_os), "avx512f": (ebx7 >> 16, avx512_os),
                    "avx512bw": (ebx7 >> 30, avx512_os), "avx512_vnni": (ecx7 >> 11, avx512_os),
                    "avx_vnni": (eax71 >> 4, avx_os), "amx_int8": (edx7 >> 25, amx_os)}
            found = {name for name, (value, enabled) in bits.items() if value & 1 and enabled}
        return found
    finally:
        memory.close()  # the two function pointers are not called after this
