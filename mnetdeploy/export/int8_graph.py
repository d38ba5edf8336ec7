"""Which ops of a full-integer TFLite model stay float, so the int8 model is fast on CPUs (XNNPACK).

Which graph is fastest depends on the CPU that runs it: with an int8 dot product (AVX512-VNNI, AMX, ARM
dotprod/i8mm) int8 kernels are far faster than float ones, without it (AVX2-only x86) they are about as fast
(cpu.py). So the default, "auto", is not a rule: quantize/graph_choice.py builds the candidates below, checks
each, times them on the target and keeps the fastest (the decision and the timings go in quantize.json).
The candidates, from most int8 to most float:
- "integer-only": every op int8 but those without any int8 TFLite kernel, for accelerators that run only
  integer graphs (NPUs, DSPs, Edge TPU, TFLite Micro). HARD_SWISH and SOFTMAX stay int8 there too.
- "float-islands": only the ops XNNPACK has no int8 kernel for stay float (rule 1 below), so the graph stays
  one XNNPACK partition; everything else int8.
- "cpu": float islands grown where XNNPACK's float kernels beat its int8 ones on the AMX machine these rules
  were measured on (float islands: DEQUANTIZE -> ops -> QUANTIZE, all inside the one XNNPACK partition):
  1. ops XNNPACK has no int8 kernel for (HARD_SWISH, SOFTMAX in ai-edge-litert 2.3.0): in int8 they run on
     LiteRT's reference kernels and split the graph (v3-small 224: 20 partitions, 4.4 ms vs 1.5 ms fp32);
  2. convolutions of the image itself (<= 4 input channels, the stem): XNNPACK has a float kernel made for
     3-channel 3x3 stride-2 convolutions and no int8 one; the int8 stem of v3-small took 0.49 ms, the float
     one 0.13 ms (single-layer models, 1 thread);
  3. ops fed by a float op, of the kinds XNNPACK runs at least as fast in float: depthwise convolutions
     (int8 2x slower on this CPU: 3x3 on 56x56x144, 0.27 vs 0.13 ms), mean, mul, add, and convolutions
     with <= 16 output channels (the int8 GEMM works in tiles of 64 output channels on AVX512-AMX CPUs:
     1x1 conv 32 -> 16 on 112x112, int8 0.21 ms vs float 0.12 ms). Keeping them float also removes the
     QUANTIZE/DEQUANTIZE pair the island would otherwise close and reopen with.
  Measured (1 thread, an Intel Xeon with AMX, interleaved): v3-small 224 int8 1.55 -> 1.09 ms (fp32
  1.53 ms), v2 224 3.26 -> 2.84 ms (fp32 4.89 ms); scripts/int8_speed_table.py rebuilds the whole table.
  On other CPUs these constants may not hold: "auto" measures instead.

Float ops carry float values; the quantize pipeline also gives their layers the exact float weights (not the
int8-snapped ones: quantize/step.py `tflite_int8`), so the "cpu" graph is closer to the float model than
"integer-only" (tests/test_int8_graph.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from mnetdeploy.config import INT8_GRAPH_CHOICES

INT8_GRAPHS = tuple(g for g in INT8_GRAPH_CHOICES if g != "auto")   # concrete graphs, most int8 first
GRAPH_CHOICES = INT8_GRAPH_CHOICES                     # what a user may ask for (the config schema)

NO_XNNPACK_INT8_KERNEL = frozenset({"HARD_SWISH", "SOFTMAX"})
IMAGE_CHANNELS = 4           # a conv with at most this many input channels convolves the image
NARROW_OUTPUT_CHANNELS = 16  # convs this narrow are faster in float on AMX CPUs (64-wide int8 tiles)
FASTER_IN_FLOAT_WHEN_FED_FLOAT = frozenset({"DEPTHWISE_CONV_2D", "MEAN", "MUL", "ADD"})


@dataclass(frozen=True)
class Op:
    index: int
    kind: str                          # builtin name, e.g. CONV_2D
    output: str                        # first output tensor's name (what the quantizer's denylist takes)
    inputs: tuple[int, ...]            # non-constant input tensor indices
    outputs: tuple[int, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]


def read_ops(model_bytes: bytes) -> list[Op]:
    """The operators of subgraph 0 in execution (topological) order, with their activation inputs."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}

    def constant(t) -> bool:
        buf = model.Buffers(graph.Tensors(t).Buffer())
        return buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)

    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if op.OutputsLength() == 0:
            continue
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        inputs = tuple(t for t in op.InputsAsNumpy().tolist() if t >= 0 and not constant(t))
        outputs = tuple(op.OutputsAsNumpy().tolist())
        out = graph.Tensors(outputs[0])
        ops.append(Op(i, kind, out.Name().decode(), inputs, outputs,
                      tuple(tuple(graph.Tensors(t).ShapeAsNumpy().tolist()) for t in inputs),
                      tuple(out.ShapeAsNumpy().tolist())))
    return ops


def float_ops(calibrated: bytes, graph: str = "cpu") -> list[str]:
    """Output tensor names of the ops to keep float in the int8 model made from `calibrated` (see above)."""
    if graph not in INT8_GRAPHS:
        raise ValueError(f"int8 graph must be one of {INT8_GRAPHS} (auto is resolved by quantize/graph_choice.py)")
    if graph == "integer-only":
        return []
    float_tensors: set[int] = set()
    keep = []
    for op in read_ops(calibrated):
        no_kernel = op.kind in NO_XNNPACK_INT8_KERNEL
        if no_kernel if graph == "float-islands" else _stays_float(op, float_tensors):
            float_tensors.update(op.outputs)
            keep.append(op.output)
    return keep


def _stays_float(op: Op, float_tensors: set[int]) -> bool:
    if op.kind in NO_XNNPACK_INT8_KERNEL:
        return True
    if op.kind == "CONV_2D" and op.input_shapes and op.input_shapes[0][-1] <= IMAGE_CHANNELS:
        return True
    if not op.inputs:
        return False
    fed_float = all(t in float_tensors for t in op.inputs)
    if op.kind in ("MUL", "ADD"):
        # squeeze-excite scales a float feature map by a tiny int8 vector: what matters is the big input
        largest = max(range(len(op.inputs)), key=lambda k: _size(op.input_shapes[k]))
        fed_float = op.inputs[largest] in float_tensors
    if not fed_float:
        return False
    if op.kind in FASTER_IN_FLOAT_WHEN_FED_FLOAT:
        return True
    return op.kind == "CONV_2D" and op.output_shape[-1] <= NARROW_OUTPUT_CHANNELS


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n
