"""Turn a paper table plus (alpha, resolution, classes, ...) into a concrete layer plan.

The plan is plain Python (no TensorFlow): it is what `info` prints, what the params/MACs are counted from,
and what `keras_builder.py` turns into a Keras model layer by layer. Counting and building read the same
plan, so the analytic totals and the Keras model cannot drift apart (a test checks they agree exactly).

Width rounding follows the reference implementations:
- v1: int(channels * alpha) (TF-slim / Keras `mobilenet.py`).
- v2: block outputs make_divisible(int(c * alpha), 8); expansion t x input width, unrounded; stem
  make_divisible(32 * alpha, 8); the 1280 head grows with alpha > 1 only (Keras `mobilenet_v2.py`).
- v3: block outputs make_divisible(c * alpha, 8); expansion make_divisible(input width x ratio, 8); SE
  make_divisible(exp / 4, 8); stem fixed at 16; last conv 6x the last block (Keras `mobilenet_v3.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnetdeploy.arch.tables import FAMILIES, SE_RATIO, Bottleneck, Family, Separable

INPUT = "input"
TOTAL_STRIDE = 32  # five stride-2 stages in every family


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round to a multiple of `divisor`, never more than 10 % below `v` (reference implementations)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class Layer:
    """One layer of the network. Convolutions carry their BatchNorm and activation with them.

    `name` is the Keras layer name of the main op (the conv's, so weights load by name); the layer's output
    is the tensor after its BN and activation.
    """

    name: str
    kind: str                     # conv | dw | pw | fc | gap | add | mul | dropout | flatten
    inputs: tuple[str, ...]       # names of the layers feeding it (INPUT is the image)
    cin: int
    cout: int
    in_size: int                  # spatial size (square) of the input
    out_size: int
    kernel: int = 1
    stride: int = 1
    bias: bool = False
    bn: str | None = None         # name of the BatchNormalization layer after it
    act: str | None = None        # relu | relu6 | hswish | hsigmoid | softmax
    act_name: str | None = None   # name of the activation layer (None: fused into the op, e.g. Dense)
    dense: bool = False           # fc implemented as Dense (v2) instead of a 1x1 conv on a 1x1 map
    block: str = ""               # which block it belongs to (for tables)
    rate: float = 0.0             # dropout rate
    keepdims: bool = True         # pooling keeps a 1x1 map (v1/v3 heads and SE use 1x1 convs); v2's Dense does not

    @property
    def weights(self) -> int:
        """Kernel weights: Dk*Dk*M*N (standard/pointwise/fc), Dk*Dk*M*dm (depthwise)."""
        if self.kind == "dw":
            return self.kernel * self.kernel * self.cout
        if self.kind in ("conv", "pw", "fc"):
            return self.kernel * self.kernel * self.cin * self.cout
        return 0

    @property
    def params(self) -> int:
        """Parameters as Keras counts them: kernel + bias + 4 per BN channel (gamma, beta, mean, variance)."""
        return self.weights + (self.cout if self.bias else 0) + (4 * self.cout if self.bn else 0)

    @property
    def deploy_params(self) -> int:
        """Parameters after batch-norm folding (what a deployed graph stores): kernel + one bias per channel."""
        if not self.weights:
            return 0
        return self.weights + (self.cout if (self.bias or self.bn) else 0)

    @property
    def macs(self) -> int:
        """Multiply-accumulates for one image (the papers' formulas).

        standard Dk*Dk*M*N*Df*Df, depthwise Dk*Dk*M*Df*Df (x depth multiplier), pointwise M*N*Df*Df, fc M*N."""
        spatial = self.out_size * self.out_size
        if self.kind == "dw":
            return self.kernel * self.kernel * self.cout * spatial
        if self.kind in ("conv", "pw", "fc"):
            return self.kernel * self.kernel * self.cin * self.cout * spatial
        return 0


@dataclass
class Network:
    arch: str
    alpha: float
    resolution: int
    classes: int
    depth_multiplier: int
    dropout: float
    classifier_activation: str | None
    layers: list[Layer] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(l.params for l in self.layers)

    @property
    def deploy_params(self) -> int:
        return sum(l.deploy_params for l in self.layers)

    @property
    def macs(self) -> int:
        return sum(l.macs for l in self.layers)

    def separable_reductions(self) -> list[dict]:
        """For every depthwise conv and the pointwise conv that consumes it: cost against one standard conv.

        The v1 paper's (Dk*Dk*M*Df*Df + M*N*Df*Df) / (Dk*Dk*M*N*Df*Df) = 1/N + 1/Dk^2."""
        out = []
        pending = None
        for layer in self.layers:
            if layer.kind == "dw":
                pending = layer
            elif layer.kind == "pw" and pending is not None and layer.in_size == pending.out_size:
                dk, m, n, df = pending.kernel, pending.cin, layer.cout, pending.out_size
                standard = dk * dk * m * n * df * df
                out.append({
                    "block": pending.block,
                    "depthwise": pending.name,
                    "pointwise": layer.name,
                    "macs": pending.macs + layer.macs,
                    "standard_macs": standard,
                    "ratio": (pending.macs + layer.macs) / standard,
                    "formula": 1 / n + 1 / (dk * dk),
                })
                pending = None
        return out

    def summary(self) -> dict:
        return {
            "arch": self.arch,
            "alpha": self.alpha,
            "resolution": self.resolution,
            "classes": self.classes,
            "params": self.params,
            "deploy_params": self.deploy_params,
            "macs": self.macs,
            "layers": [layer_row(l) for l in self.layers if l.weights],
            "separable_blocks": self.separable_reductions(),
        }


def layer_row(layer: Layer) -> dict:
    return {
        "name": layer.name,
        "block": layer.block,
        "type": layer.kind,
        "kernel": layer.kernel,
        "stride": layer.stride,
        "in_channels": layer.cin,
        "out_channels": layer.cout,
        "out_size": layer.out_size,
        "params": layer.params,
        "macs": layer.macs,
    }


class _Planner:
    """Appends layers while tracking the current tensor's name, width and spatial size."""

    def __init__(self, net: Network):
        self.net = net
        self.cur, self.width, self.size = INPUT, 3, net.resolution

    def add(self, name, kind, cout, *, kernel=1, stride=1, inputs=None, **kw) -> Layer:
        out_size = -(-self.size // stride)  # SAME padding: ceil(size / stride)
        if kind in ("gap",):
            out_size = 1
        layer = Layer(name=name, kind=kind, inputs=inputs or (self.cur,), cin=self.width, cout=cout,
                      in_size=self.size, out_size=out_size, kernel=kernel, stride=stride, **kw)
        self.net.layers.append(layer)
        self.cur, self.width, self.size = name, cout, out_size
        return layer


def _act_name(prefix: str, act: str) -> str:
    return f"{prefix}_{act}"


def plan_network(arch: str, alpha: float = 1.0, resolution: int = 224, classes: int = 1000,
                 depth_multiplier: int = 1, dropout: float | None = None,
                 classifier_activation: str | None = "softmax") -> Network:
    """The concrete layers of MobileNet `arch` at width `alpha` and input `resolution`."""
    fam = FAMILIES[arch]
    if classifier_activation in ("none", "linear"):
        classifier_activation = None
    net = Network(arch=arch, alpha=alpha, resolution=resolution, classes=classes,
                  depth_multiplier=depth_multiplier, dropout=fam.dropout if dropout is None else dropout,
                  classifier_activation=classifier_activation)
    p = _Planner(net)
    if fam.name == "v1":
        _plan_v1(p, fam, alpha, depth_multiplier)
    elif fam.name == "v2":
        _plan_v2(p, fam, alpha)
    else:
        _plan_v3(p, fam, alpha)
    return net


def _plan_v1(p: _Planner, fam: Family, alpha: float, dm: int) -> None:
    p.add("conv1", "conv", int(fam.stem * alpha), kernel=3, stride=2, bn="conv1_bn", act="relu6",
          act_name="conv1_relu", block="stem")
    for i, blk in enumerate(fam.blocks, start=1):
        assert isinstance(blk, Separable)
        b = f"block {i}"
        p.add(f"conv_dw_{i}", "dw", p.width * dm, kernel=3, stride=blk.stride, bn=f"conv_dw_{i}_bn",
              act="relu6", act_name=f"conv_dw_{i}_relu", block=b)
        p.add(f"conv_pw_{i}", "pw", int(blk.out * alpha), bn=f"conv_pw_{i}_bn", act="relu6",
              act_name=f"conv_pw_{i}_relu", block=b)
    net = p.net
    p.add("global_average_pooling2d", "gap", p.width, block="head")
    p.add("dropout", "dropout", p.width, rate=net.dropout, block="head")
    p.add("conv_preds", "fc", net.classes, bias=True, block="head")
    p.add("reshape_2", "flatten", net.classes, block="head",
          act=net.classifier_activation, act_name="predictions")


def _plan_v2(p: _Planner, fam: Family, alpha: float) -> None:
    p.add("Conv1", "conv", make_divisible(fam.stem * alpha), kernel=3, stride=2, bn="bn_Conv1",
          act="relu6", act_name="Conv1_relu", block="stem")
    in_ref = fam.stem
    for i, blk in enumerate(fam.blocks):
        assert isinstance(blk, Bottleneck)
        t = blk.exp // in_ref
        out = make_divisible(int(blk.out * alpha))
        _bottleneck(p, prefix="expanded_conv_" if i == 0 else f"block_{i}_", block=f"block {i}",
                    exp=t * p.width, out=out, blk=blk, bn_suffix="BN", expand=t != 1)
        in_ref = blk.out
    assert fam.last_conv is not None  # None only for v1
    last = fam.last_conv if alpha <= 1.0 else make_divisible(fam.last_conv * alpha)
    p.add("Conv_1", "pw", last, bn="Conv_1_bn", act="relu6", act_name="out_relu", block="head")
    net = p.net
    p.add("global_average_pooling2d", "gap", p.width, keepdims=False, block="head")
    p.add("predictions", "fc", net.classes, bias=True, dense=True, act=net.classifier_activation,
          block="head")


def _plan_v3(p: _Planner, fam: Family, alpha: float) -> None:
    p.add("conv", "conv", fam.stem, kernel=3, stride=2, bn="conv_bn", act=fam.stem_act,
          act_name=_act_name("conv", fam.stem_act), block="stem")
    in_ref = fam.stem
    for i, blk in enumerate(fam.blocks):
        assert isinstance(blk, Bottleneck)
        ratio = blk.exp / in_ref
        _bottleneck(p, prefix="expanded_conv_" if i == 0 else f"expanded_conv_{i}_", block=f"block {i}",
                    exp=make_divisible(p.width * ratio), out=make_divisible(blk.out * alpha), blk=blk,
                    bn_suffix="bn", expand=i != 0)
        in_ref = blk.out
    act = fam.last_conv_act
    assert fam.last_conv is not None and fam.head_conv is not None  # v3 has both (None only for v1/v2)
    p.add("conv_1", "pw", make_divisible(p.width * fam.last_conv / fam.blocks[-1].out), bn="conv_1_bn",
          act=act, act_name=_act_name("conv_1", act), block="head")
    net = p.net
    p.add("global_average_pooling2d", "gap", p.width, block="head")
    head = fam.head_conv if alpha <= 1.0 else make_divisible(fam.head_conv * alpha)
    p.add("conv_2", "fc", head, bias=True, act=act, act_name=_act_name("conv_2", act), block="head")
    p.add("dropout", "dropout", p.width, rate=net.dropout, block="head")
    p.add("logits", "fc", net.classes, bias=True, block="head")
    p.add("flatten", "flatten", net.classes, block="head", act=net.classifier_activation,
          act_name="predictions")


def _bottleneck(p: _Planner, *, prefix: str, block: str, exp: int, out: int, blk: Bottleneck,
                bn_suffix: str, expand: bool) -> None:
    """Inverted residual with linear bottleneck (v2), optionally with squeeze-excite and h-swish (v3)."""
    shortcut, in_width = p.cur, p.width
    if expand:
        p.add(f"{prefix}expand", "pw", exp, bn=f"{prefix}expand_{bn_suffix}", act=blk.act,
              act_name=_act_name(f"{prefix}expand", blk.act), block=block)
    p.add(f"{prefix}depthwise", "dw", p.width, kernel=blk.kernel, stride=blk.stride,
          bn=f"{prefix}depthwise_{bn_suffix}", act=blk.act,
          act_name=_act_name(f"{prefix}depthwise", blk.act), block=block)
    if blk.se:
        se_in, width, size = p.cur, p.width, p.size
        se = f"{prefix}squeeze_excite"
        p.add(f"{se}_avg_pool", "gap", width, block=block)
        p.add(f"{se}_conv", "fc", make_divisible(width * SE_RATIO), bias=True, act="relu",
              act_name=f"{se}_relu", block=block)
        p.add(f"{se}_conv_1", "fc", width, bias=True, act="hsigmoid", act_name=f"{se}_hsigmoid",
              block=block)
        p.size = size
        p.add(f"{se}_mul", "mul", width, inputs=(se_in, p.cur), block=block)
    p.add(f"{prefix}project", "pw", out, bn=f"{prefix}project_{bn_suffix}", block=block)
    if blk.stride == 1 and in_width == out:
        p.add(f"{prefix}add", "add", out, inputs=(shortcut, p.cur), block=block)
