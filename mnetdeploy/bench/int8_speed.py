"""Say plainly when int8 does not buy speed on the machine that measured it, and why.

Int8 is 1.5-2x faster than fp32 on CPUs with an int8 dot product (AVX512-VNNI, AVX-VNNI, AMX; ARM dotprod,
i8mm) and about as fast without one (AVX2-only x86: measured 1.0x on v2 1.0/224 on an AMD EPYC Zen 3). A user
who sees the same latency for both should learn that it is the CPU, not the model or the tool. `bench` prints
these notes and the report shows them under the latency table.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

# An int8 model less than 10 % faster than its fp32 twin is reported: within the run-to-run noise of
# shared machines, that is "no faster".
NOT_FASTER = 1.10


def int8_speed_notes(results: Iterable[dict[str, Any]]) -> list[str]:
    """One note per int8 result whose fp32 twin (same directory, format, device, runtime, threads) was
    measured and is not clearly slower."""
    from mnetdeploy.cpu import from_dict

    results = [r for r in results if isinstance(r, dict) and (r.get("latency_ms") or {}).get("p50")]
    fp32 = {_group(r): r for r in results if r.get("precision") == "fp32"}
    notes = []
    for r in results:
        base = fp32.get(_group(r)) if r.get("precision") == "int8" else None
        if base is None:
            continue
        speedup = base["latency_ms"]["p50"] / r["latency_ms"]["p50"]
        if speedup >= NOT_FASTER:
            continue
        env = r.get("environment") or {}
        cpu = from_dict(env.get("cpu_features"))
        why = cpu.int8_speed_note() if cpu else "the CPU's instruction-set features were not recorded"
        if cpu and cpu.int8_dot_product:
            why += "; this model's int8 graph gains little over float here (see `mnetdeploy info` for float ops)"
        where = "this device" if r.get("device") not in (None, "host") else "this CPU"
        notes.append(f"{Path(str(r['model'])).name}: int8 is no faster than fp32 on {where} "
                     f"({speedup:.2f}x: p50 {r['latency_ms']['p50']:.3g} ms vs {base['latency_ms']['p50']:.3g} ms, "
                     f"{r.get('runtime')}, {r.get('threads')} thread(s)); {why}")
    return notes


def _group(r: dict[str, Any]) -> tuple:
    return (str(Path(str(r.get("model"))).parent), r.get("format"), r.get("device"), r.get("runtime"),
            r.get("xnnpack"), r.get("threads"))
