"""Per-layer params and MACs read from a Keras graph: for models this tool did not build (fine-tuned heads,
Keras applications), where there is no plan to count from.

    from mnetdeploy.arch.imported import keras_summary
    keras_summary(model)   # the same fields as plan.Network.summary(), read from the layers

Counted layer types (everything else, e.g. pooling, Add, Multiply, activations, counts 0 MACs, as in the
plan): Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, and BatchNormalization, whose 4 parameters per
channel are booked on the convolution it follows (the plan's rows carry their batch norm the same way).
MACs come from the output shapes: standard conv Kh*Kw*Cin/groups*Cout*Hout*Wout, depthwise Kh*Kw*Cout*Hout*Wout,
dense In*Out (per position, if applied to a map). A 1x1 conv on a 1x1 map is typed "fc", as the plan types
v1/v3 heads and squeeze-excite convs, so both tables read alike.
"""

from __future__ import annotations

import re
from typing import Any

from mnetdeploy.arch.plan import plan_network
from mnetdeploy.arch.tables import FAMILIES
from mnetdeploy.errors import UserError

COUNTED_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "BatchNormalization")
# Widths tried when recognising a MobileNet family (the plan decides; a match must be exact, layer by layer).
DETECT_ALPHAS = (0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
_BLOCK = re.compile(r"^(?:block_(\d+)_|conv_(?:dw|pw)_(\d+)|expanded_conv_(\d+)_|(expanded_conv)_)")


def input_contract(model, source: str) -> tuple[int, int]:
    """(resolution, classes) of an image classifier: one fixed square RGB NHWC input, one (batch, classes)
    output. Anything else is refused in one line naming what is wrong (the exporters and the checks feed
    square RGB images and compare class scores)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{source}: {len(model.inputs)} input(s) and {len(model.outputs)} output(s); only "
                        "image classifiers with one input and one output can be adopted")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise UserError(f"{source}: input shape {_shape(shape)} is not an image (batch, height, width, 3); only "
                        "image classifiers can be adopted")
    _, h, w, c = shape
    if h is None or w is None:
        raise UserError(f"{source}: input size {_shape(shape)} is dynamic; save the model with a fixed input "
                        "size (e.g. input_shape=(224, 224, 3))")
    if h != w or c != 3:
        raise UserError(f"{source}: input shape {_shape(shape)} is not a square RGB image (N, S, S, 3, "
                        "channels last)")
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or not out[1] or out[1] < 2:
        raise UserError(f"{source}: output shape {_shape(out)} is not (batch, classes) with at least 2 classes")
    return int(h), int(out[1])


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _layers(model) -> list:
    """Every layer, with nested models (a backbone used as one layer) opened up."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.__class__.__name__ in ("Functional", "Sequential", "Model"):
            out += _layers(layer)
        else:
            out.append(layer)
    return out


def _spatial(shape: tuple) -> int:
    return int(shape[1]) if len(shape) == 4 and shape[1] is not None else 1


def _block(name: str) -> str:
    m = _BLOCK.match(name)
    if not m:
        return ""
    number = next((g for g in m.groups()[:3] if g is not None), None)
    return f"block {number}" if number is not None else "block 0"


def layer_rows(model) -> list[dict[str, Any]]:
    """One row per counted layer (COUNTED_TYPES), in graph order, shaped like plan.layer_row."""
    rows: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    for layer in _layers(model):
        kind = _counted_type(layer)
        if kind is None:
            continue
        x = layer.input[0] if isinstance(layer.input, (list, tuple)) else layer.input
        cin, in_shape, out_shape = int(x.shape[-1]), tuple(x.shape), tuple(layer.output.shape)
        if kind == "BatchNormalization":
            producer = getattr(x, "_keras_history", None)
            row = by_name.get(producer.operation.name) if producer is not None else None
            if row is not None:   # booked on its conv, as the plan books it
                row["params"] += int(layer.count_params())
                row["bn"] = True
                continue
            rows.append(_row(layer.name, "bn", 1, 1, cin, cin, _spatial(out_shape), layer.count_params(), 0))
            continue
        cout, size = int(out_shape[-1]), _spatial(out_shape)
        positions = size * size
        if kind == "Dense":
            positions = 1
            for d in out_shape[1:-1]:
                positions *= int(d or 1)
            macs, k, stride, typ = cin * cout * positions, 1, 1, "fc"
        else:
            k, stride = int(layer.kernel_size[0]), int(layer.strides[0])
            kk = int(layer.kernel_size[0]) * int(layer.kernel_size[1])
            if kind == "DepthwiseConv2D":
                macs, typ = kk * cout * positions, "dw"
            elif kind == "SeparableConv2D":
                mid = cin * int(layer.depth_multiplier)
                macs, typ = (kk * mid + mid * cout) * positions, "sep"
            else:
                groups = int(getattr(layer, "groups", 1) or 1)
                macs = kk * (cin // groups) * cout * positions
                typ = "conv" if kk > 1 else ("fc" if _spatial(in_shape) == 1 else "pw")
        row = _row(layer.name, typ, k, stride, cin, cout, size, layer.count_params(), macs)
        row["bias"] = bool(getattr(layer, "use_bias", False))
        rows.append(row)
        by_name[layer.name] = row
    return rows


def _counted_type(layer) -> str | None:
    """The COUNTED_TYPES name of `layer`, by class (subclasses included: legacy .h5 files load their depthwise
    convs as a subclass, see arch/weights.load_keras_model), or None."""
    import keras

    for name in COUNTED_TYPES:  # DepthwiseConv2D and SeparableConv2D do not derive from Conv2D in Keras 3
        if isinstance(layer, getattr(keras.layers, name)):
            return name
    return None


def _row(name, typ, kernel, stride, cin, cout, size, params, macs) -> dict[str, Any]:
    return {"name": name, "block": _block(name), "type": typ, "kernel": kernel, "stride": stride,
            "in_channels": cin, "out_channels": cout, "out_size": size, "params": int(params), "macs": int(macs)}


def _deploy_params(row: dict[str, Any]) -> int:
    """Parameters after batch-norm folding: the kernel plus one bias per output channel (as plan.Layer)."""
    if row["type"] == "bn":
        return 0
    bn_params = 4 * row["out_channels"] if row.get("bn") else 0
    bias = row["out_channels"] if row.get("bias") else 0
    weights = row["params"] - bn_params - bias
    return weights + (row["out_channels"] if row.get("bn") or row.get("bias") else 0)


def detect_family(rows: list[dict[str, Any]], resolution: int, classes: int) -> tuple[str, float] | None:
    """(arch, alpha) when every layer of a MobileNet family's backbone (stem and blocks; the head may be the
    user's own) is in the graph under the plan's name with the plan's type, width and params."""
    by_name = {r["name"]: r for r in rows}
    for arch in FAMILIES:
        for alpha in DETECT_ALPHAS:
            try:
                net = plan_network(arch, alpha, resolution, classes)
            except (ValueError, KeyError, ZeroDivisionError):
                continue
            backbone = [l for l in net.layers if l.weights and l.block != "head"]
            if backbone and all(l.name in by_name and by_name[l.name]["out_channels"] == l.cout
                                and by_name[l.name]["params"] == l.params for l in backbone):
                return arch, alpha
    return None


def keras_summary(model, source: str) -> dict[str, Any]:
    """Params/MACs per layer read from `model`'s graph, with the fields of plan.Network.summary()."""
    resolution, classes = input_contract(model, source)
    rows = layer_rows(model)
    found = detect_family(rows, resolution, classes)
    arch, alpha = found if found else ("custom", 1.0)
    if found:  # the plan's block labels (stem, block N, head) for the layers it has
        blocks = {l.name: l.block for l in plan_network(arch, alpha, resolution, classes).layers}
        for row in rows:
            row["block"] = blocks.get(row["name"], row["block"] or "head")
    deploy_params = sum(_deploy_params(r) for r in rows)
    for row in rows:  # bookkeeping for deploy_params, not summary fields
        row.pop("bn", None)
        row.pop("bias", None)
    return {
        "arch": arch, "alpha": alpha, "resolution": resolution, "classes": classes,
        # Keras' own count: includes layers whose parameters no row shows (custom layers, PReLU, ...).
        "params": int(model.count_params()),
        "deploy_params": deploy_params,
        "macs": sum(r["macs"] for r in rows),
        "layers": rows,
        "counted_layer_types": list(COUNTED_TYPES),
        "detected": {"arch": arch, "alpha": alpha if found else None,
                     "how": "every stem/block layer of the plan found with its width and params" if found
                     else "no MobileNet family's backbone matched layer by layer"},
    }
