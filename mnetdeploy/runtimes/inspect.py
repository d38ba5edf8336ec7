"""How a runtime actually executes an exported model: which ops a delegate or int8 kernel takes, which not.

    from mnetdeploy.runtimes.inspect import inspect_execution
    inspect_execution("artifacts/v2_1.0_224/model_int8.tflite", threads=1)

TFLite (LiteRT): the operator list of the flatbuffer (op types before delegation) is compared with the node
table of an Interpreter built with the AUTO resolver (XNNPACK applied, as the runner and the benchmark do).
XNNPACK replaces each partition of ops it takes with one DELEGATE node; every other node left in the table
runs on LiteRT's default kernels. A node that is not delegated costs a delegate boundary (XNNPACK's packed
tensors are copied out and back) on top of running a slower reference kernel, so "100 % delegated" is what
fast CPU graphs aim for.

ONNX Runtime: the model as the session runs it (all graph optimizations applied, written out through
`SessionOptions.optimized_model_filepath`) is listed by node type. In a QDQ int8 model, ONNX Runtime fuses
DequantizeLinear -> op -> QuantizeLinear into integer kernels (QLinearConv, QLinearAdd, MatMulInteger, ...);
an op without such a kernel stays float between a DequantizeLinear and a QuantizeLinear (a "fallback"),
paying two conversions and float compute.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from mnetdeploy.errors import UserError

# ONNX Runtime node types that compute on integers (after its QDQ fusions) or only convert.
ONNX_INT8_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm", "QLinearAdd", "QLinearMul",
    "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat",
    "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
    "DynamicQuantizeLinear", "QAttention", "NhwcMaxPool", "QLinearConvTranspose",
})
ONNX_CONVERT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops that only move or view data: neither float nor integer compute.
ONNX_LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity",
                             "ReorderInput", "ReorderOutput", "Shape", "Gather", "Concat", "Slice",
                             "Cast"})


def inspect_execution(path: str | Path, threads: int | None = 1) -> dict[str, Any]:
    """How `path` (.tflite or .onnx) runs on this machine's runtime; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    from mnetdeploy.quiet import quiet_native_output

    if path.suffix in (".tflite", ".onnx"):
        inspect = inspect_tflite if path.suffix == ".tflite" else inspect_onnx
        with quiet_native_output():  # delegate banners, ORT's warning about saving an optimized model
            return inspect(path, threads)
    raise UserError(f"{path}: cannot inspect execution of a {path.suffix or 'suffix-less'} file; "
                    "pass a .tflite or .onnx model")


# ------------------------------------------------------------------------------------------------ TFLite

def tflite_op_types(model_bytes: bytes) -> list[str]:
    """Builtin (or custom) op name of every operator of the main subgraph, in graph order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    out = []
    for i in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # codes >= 127 live in the new field
        if names.get(builtin) == "CUSTOM" and code.CustomCode():
            out.append(f"CUSTOM:{code.CustomCode().decode()}")
        else:
            out.append(names.get(builtin, str(builtin)))
    return out


def inspect_tflite(path: Path, threads: int | None = 1) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    ops = tflite_op_types(path.read_bytes())
    interp = Interpreter(model_path=str(path), num_threads=threads,
                         experimental_op_resolver_type=OpResolverType.AUTO)
    interp.allocate_tensors()  # XNNPACK is applied by the time tensors are allocated
    try:
        nodes = interp._get_ops_details()  # noqa: SLF001 - the only view of the post-delegation node table
    except Exception as e:  # private API: say so instead of guessing
        return {"runtime": "litert", "delegate": "unknown", "error": f"node table unavailable ({e})",
                "ops": len(ops), "op_types": dict(Counter(ops))}
    # After delegation the table holds the original nodes (first, in model order) plus one DELEGATE node
    # per partition appended; the nodes a delegate took are no longer in the execution plan but still in the
    # table. An original node is delegated when it lies inside some DELEGATE node's partition.
    delegate_nodes = [n for n in nodes if n["op_name"] == "DELEGATE"]
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"][:len(ops)]
    covered = _delegated_op_indices(originals, delegate_nodes)
    left = [n["op_name"] for i, n in enumerate(originals) if i not in covered]
    taken = [n["op_name"] for i, n in enumerate(originals) if i in covered]
    total = len(ops)
    return {
        "runtime": "litert",
        "delegate": "xnnpack" if delegate_nodes else None,
        "threads": threads,
        "ops": total,
        "delegate_partitions": len(delegate_nodes),
        "delegated_ops": len(taken),
        "default_kernel_ops": len(left),
        "delegated_percent": round(100.0 * len(taken) / total, 1) if total else 0.0,
        "op_types": dict(Counter(ops)),
        "delegated_by_type": dict(Counter(taken)),
        "not_delegated_by_type": dict(Counter(left)),
    }


def _delegated_op_indices(originals: list[dict], delegate_nodes: list[dict]) -> set[int]:
    """Indices of original nodes inside some delegate partition.

    A partition consumes tensors from outside and produces its outputs; the ops inside it are those reachable
    backwards from the partition's outputs without crossing its inputs."""
    producer: dict[int, int] = {}
    for index, node in enumerate(originals):
        for t in node["outputs"]:
            producer[int(t)] = index
    covered: set[int] = set()
    for d in delegate_nodes:
        boundary = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        seen = set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary:
                continue
            seen.add(t)
            i = producer.get(t)
            if i is None or i in covered:
                continue
            covered.add(i)
            stack.extend(int(x) for x in originals[i]["inputs"] if int(x) >= 0)
    return covered


# -------------------------------------------------------------------------------------------------- ONNX

def inspect_onnx(path: Path, threads: int | None = 1) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    source = onnx.load(str(path), load_external_data=False)
    with tempfile.TemporaryDirectory(prefix="mnetdeploy-ort-") as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")
        from mnetdeploy.runtimes.onnx import session_config, session_options

        options = session_options(threads)  # the runner's settings: what is written is what runs
        options.optimized_model_filepath = optimized
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        providers = list(session.get_providers())
        del session
        graph = onnx.load(optimized, load_external_data=False).graph
    before = [n.op_type for n in source.graph.node]
    after = [n.op_type for n in graph.node]
    int8 = [t for t in after if t in ONNX_INT8_OPS]
    convert = [t for t in after if t in ONNX_CONVERT_OPS]
    float_ops = [t for t in after if t not in ONNX_INT8_OPS | ONNX_CONVERT_OPS | ONNX_LAYOUT_OPS]
    quantized_model = any(t in ONNX_CONVERT_OPS or t in ONNX_INT8_OPS for t in before)
    compute = len(int8) + len(float_ops)
    return {
        "runtime": "onnxruntime",
        "providers": providers,
        "graph_optimization": "all",
        "session_config": session_config(),
        "threads": threads,
        "nodes_before": len(before),
        "nodes": len(after),
        "int8_nodes": len(int8),
        "float_nodes": len(float_ops),
        "convert_nodes": len(convert),
        # Of the nodes that compute, the share on integer kernels (a float model: 0 by definition).
        "int8_percent": round(100.0 * len(int8) / compute, 1) if compute else 0.0,
        "quantized": quantized_model,
        "op_types": dict(Counter(after)),
        "float_by_type": dict(Counter(float_ops)),
        # In an int8 model, float compute between DequantizeLinear and QuantizeLinear is a fallback.
        "fallback_by_type": _fallbacks(graph) if quantized_model else {},
    }


def _fallbacks(graph) -> dict[str, int]:
    """Float compute nodes fed by a DequantizeLinear or feeding a QuantizeLinear: ops ONNX Runtime found
    no integer kernel for."""
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    found: Counter[str] = Counter()
    for n in graph.node:
        if n.op_type in ONNX_INT8_OPS | ONNX_CONVERT_OPS | ONNX_LAYOUT_OPS:
            continue
        fed = any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input)
        feeds = any(c.op_type == "QuantizeLinear" for o in n.output for c in consumers.get(o, []))
        if fed or feeds:
            found[n.op_type] += 1
    return dict(found)


def summary_line(info: dict[str, Any]) -> str:
    """One line for consoles and tables."""
    if info.get("runtime") == "litert":
        if "error" in info:
            return f"delegation unknown ({info['error']})"
        left = ", ".join(f"{k} x{v}" for k, v in sorted(info["not_delegated_by_type"].items()))
        return (f"XNNPACK {info['delegated_ops']}/{info['ops']} ops ({info['delegated_percent']:g} %) in "
                f"{info['delegate_partitions']} partition(s)" + (f"; default kernels: {left}" if left else ""))
    falls = ", ".join(f"{k} x{v}" for k, v in sorted(info.get("fallback_by_type", {}).items()))
    if info.get("quantized"):
        return (f"ORT int8 kernels {info['int8_nodes']}, float {info['float_nodes']}, Q/DQ "
                f"{info['convert_nodes']} ({info['int8_percent']:g} % int8)"
                + (f"; float fallbacks: {falls}" if falls else ""))
    return f"ORT float graph: {info['nodes']} nodes after optimization"


# ------------------------------------------------------------------------------------ per-layer (TFLite)

# TFLite ops that carry weights, and the plan's names for them. Filter layouts: CONV_2D [Cout, Kh, Kw, Cin],
# DEPTHWISE_CONV_2D [1, Kh, Kw, Cout], FULLY_CONNECTED [Out, In].
TFLITE_WEIGHT_OPS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc"}


def tflite_layers(path: str | Path) -> list[dict[str, Any]]:
    """Params and MACs of each conv/depthwise/fully-connected op of a .tflite file, from its tensor shapes
    (rows shaped like plan.layer_row; batch norm is already folded, so params are kernel + bias)."""
    from ai_edge_litert.interpreter import Interpreter

    from mnetdeploy.quiet import quiet_native_output

    with quiet_native_output():
        interp = Interpreter(model_path=str(path))  # builtin kernels only: the graph as written, undelegated
        ops = interp._get_ops_details()  # noqa: SLF001 - op inputs/outputs are only exposed here
        shapes = {t["index"]: [int(d) for d in t["shape"]] for t in interp.get_tensor_details()}
        names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    rows = []
    for op in ops:
        kind = TFLITE_WEIGHT_OPS.get(op["op_name"])
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        if kind is None or len(ins) < 2 or not op["outputs"]:
            continue
        x, w, out = shapes.get(ins[0], []), shapes.get(ins[1], []), shapes.get(int(op["outputs"][0]), [])
        bias = shapes.get(ins[2], [0]) if len(ins) > 2 else [0]
        params = _product(w) + (_product(bias) if len(ins) > 2 else 0)
        positions = _product(out[1:-1]) if len(out) > 2 else 1
        size, in_size = (out[1] if len(out) == 4 else 1), (x[1] if len(x) == 4 else 1)
        if kind == "fc":
            cin, cout, k = w[-1], w[0], 1
            macs = cin * cout * positions
        elif kind == "dw":
            cin, cout, k = x[-1], w[-1], w[1]
            macs = w[1] * w[2] * cout * positions
        else:
            cin, cout, k = w[-1], w[0], w[1]
            macs = w[1] * w[2] * w[3] * cout * positions
            kind = "conv" if k > 1 else ("fc" if in_size == 1 else "pw")
        rows.append({"name": names.get(int(op["outputs"][0]), op["op_name"]), "block": "", "type": kind,
                     "kernel": k, "stride": max(1, round(in_size / size)) if size else 1, "in_channels": cin,
                     "out_channels": cout, "out_size": size, "params": params, "macs": macs})
    return rows


def _product(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= max(int(d), 1)
    return n
