"""What a benchmark number belongs to: the machine, the software, and the model file.

A latency without its context cannot be compared: the same model is 2x apart between a loaded and an idle
machine, between a powersave and a performance governor, between 1 and 2 threads. Everything here is read
cheaply (no heavy imports: package versions come from metadata, the model is parsed, not loaded), so it
runs in the parent process right before each model's benchmark. Unreadable facts are recorded as null.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import sha256_file

PACKAGES = ("mnetdeploy", "ai-edge-litert", "onnxruntime", "numpy")
CPUFREQ = Path("/sys/devices/system/cpu")


# ---------------------------------------------------------------- machine and software

def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    text = _read(Path("/proc/cpuinfo")) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor", "cpu model"):
            return value.strip()
    return platform.processor() or None


def cpu_identity() -> dict[str, Any]:
    """The CPU model and its int8-relevant instruction-set features (mnetdeploy/cpu.py): what int8 speed and
    numerics depend on, recorded with every bench, eval, export check and int8 graph decision."""
    from mnetdeploy.cpu import host_cpu

    return {"cpu_model": cpu_model(), "cpu_features": host_cpu().to_dict()}


def cpu_affinity() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cpu_frequency(cpus: list[int] | None) -> dict[str, Any]:
    """Governor and current/max frequency (MHz) of each CPU we may run on, from cpufreq when exposed.

    Virtual machines and containers often expose no cpufreq; then everything is null."""
    per_cpu = {}
    for cpu in cpus if cpus is not None else range(os.cpu_count() or 0):
        base = CPUFREQ / f"cpu{cpu}" / "cpufreq"
        governor = _read(base / "scaling_governor")
        cur = _read(base / "scaling_cur_freq")
        top = _read(base / "cpuinfo_max_freq")
        if governor is None and cur is None:
            continue
        per_cpu[str(cpu)] = {"governor": governor,
                             "cur_mhz": round(int(cur) / 1000) if cur and cur.isdigit() else None,
                             "max_mhz": round(int(top) / 1000) if top and top.isdigit() else None}
    governors = sorted({v["governor"] for v in per_cpu.values() if v["governor"]})
    return {"governor": governors[0] if len(governors) == 1 else (governors or None), "per_cpu": per_cpu or None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_environment(model: ModelFacts, runtime: str, threads: int) -> dict[str, Any]:
    affinity = cpu_affinity()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        **cpu_identity(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "threads": threads,
        "cpufreq": cpu_frequency(affinity),
        "load_average": load,
        "os": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "python": sys.version.split()[0],
        "runtime": runtime,
        "packages": package_versions(),
        "model": {"path": str(model.path), "sha256": model.sha256, "bytes": model.bytes,
                  "input_shape": list(model.input_shape), "input_dtype": model.input_dtype},
        "collected": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def environment_warnings(env: dict[str, Any]) -> list[str]:
    """Conditions that make latencies less trustworthy, stated so a reader of the JSON sees them."""
    warnings = []
    cpus = len(env["cpu_affinity"]) if env.get("cpu_affinity") else env.get("cpu_count")
    load = env.get("load_average")
    if cpus and load and load[0] > cpus:
        warnings.append(f"load average {load[0]:g} over the last minute on {cpus} CPU(s): other processes "
                        "compete for the CPU; latencies are likely inflated and noisy")
    if cpus and env.get("threads", 1) > cpus:
        warnings.append(f"{env['threads']} threads on {cpus} CPU(s) this process may run on: threads will "
                        "time-share cores")
    governor = (env.get("cpufreq") or {}).get("governor")
    if governor and governor not in ("performance",):
        warnings.append(f"CPU frequency governor {governor!r}: frequency may ramp during the run "
                        "('performance' gives steadier numbers)")
    return warnings


# ---------------------------------------------------------------- the model file

@dataclass
class ModelFacts:
    path: Path
    format: str             # "tflite" | "onnx"
    precision: str          # see schema.py
    input_shape: tuple[int, ...]
    input_dtype: str
    sha256: str
    bytes: int


def inspect_model(path: str | Path) -> ModelFacts:
    """Format, precision and input of a .tflite/.onnx file, read from the file itself (nothing executed)."""
    from mnetdeploy.runtimes import model_format

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    fmt = model_format(path)
    if fmt == "tflite":
        precision, shape, dtype = _inspect_tflite(path)
    elif fmt == "onnx":
        precision, shape, dtype = _inspect_onnx(path)
    else:
        raise UserError(f"{path}: bench runs .tflite and .onnx models; export this {fmt} model first")
    return ModelFacts(path, fmt, precision, shape, dtype, sha256_file(path), path.stat().st_size)


def classify_precision(activation_types: list[str], weight_types: list[str]) -> str:
    """Precision from the element types of activation (computed) and weight (constant) tensors.

    Integer activations in the majority means the graph computes in integers (a full-integer model with
    float input/output still has two float activations); otherwise the weight types decide."""
    quant_acts = sum(t in ("int8", "uint8", "int16") for t in activation_types)
    float_acts = sum(t in ("float32", "float16", "bfloat16") for t in activation_types)
    if quant_acts and quant_acts >= float_acts:
        return "int16x8" if "int16" in activation_types else "int8"
    if any(t in ("int8", "uint8", "int4") for t in weight_types):
        return "dynamic"
    if "float16" in weight_types or "float16" in activation_types:
        return "fp16"
    return "fp32"


def _inspect_tflite(path: Path) -> tuple[str, tuple[int, ...], str]:
    from ai_edge_litert import schema_py_generated as schema

    buf = path.read_bytes()
    if len(buf) < 8 or not schema.Model.ModelBufferHasIdentifier(buf, 0):
        raise UserError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier); re-export the model")
    try:
        return _read_tflite(schema, buf)
    except Exception as e:  # flatbuffers raises struct/index errors on truncated or corrupted files
        raise UserError(f"{path}: damaged TFLite file ({type(e).__name__} while reading it, truncated?); "
                        "re-export the model") from None


def _read_tflite(schema, buf: bytes) -> tuple[str, tuple[int, ...], str]:
    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(buf, 0)

    def has_data(buffer_index: int) -> bool:
        if buffer_index <= 0 or buffer_index >= model.BuffersLength():
            return False
        b = model.Buffers(buffer_index)
        return b.DataLength() > 0 or b.Offset() > 1   # Offset: data stored after the flatbuffer (>2 GB models)

    activations: list[str] = []
    weights: list[str] = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            (weights if has_data(tensor.Buffer()) else activations).append(names.get(tensor.Type(), "?"))
    main = model.Subgraphs(0)
    first_input = main.Tensors(main.Inputs(0))
    shape = tuple(int(d) for d in first_input.ShapeAsNumpy())
    return classify_precision(activations, weights), shape, names.get(first_input.Type(), "?")


def _inspect_onnx(path: Path) -> tuple[str, tuple[int, ...], str]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others for a file that is not an ONNX protobuf
        raise UserError(f"{path}: not a readable ONNX model ({type(e).__name__}); re-export the model") from None
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    ops = [node.op_type for node in graph.node]
    # ONNX calls float32 "FLOAT" and float64 "DOUBLE"; use numpy's names like the TFLite side.
    type_name = {v: {"float": "float32", "double": "float64"}.get(k.lower(), k.lower())
                 for k, v in onnx.TensorProto.DataType.items()}

    if {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"} & set(ops):
        precision = "dynamic"
    elif {"QLinearConv", "QLinearMatMul", "QLinearAdd"} & set(ops):
        precision = "int8"
    else:
        # QDQ format: QuantizeLinear on a computed tensor (not an initializer) means quantized activations;
        # DequantizeLinear on initializers alone is weight-only quantization.
        act_q = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in initializers]
        if act_q:
            zp_types = {type_name.get(initializers[n.input[2]].data_type) for n in act_q
                        if len(n.input) > 2 and n.input[2] in initializers}
            precision = "int16x8" if zp_types & {"int16", "uint16"} else "int8"
        elif "DequantizeLinear" in ops:
            precision = "dynamic"
        else:
            weight_types = {type_name.get(init.data_type) for init in initializers.values()}
            precision = "fp16" if "float16" in weight_types else "fp32"

    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise UserError(f"{path}: the ONNX graph has no input; re-export the model")
    tensor_type = inputs[0].type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim)
    return precision, shape, type_name.get(tensor_type.elem_type, "?")
