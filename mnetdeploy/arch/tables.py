"""The MobileNet papers' architecture tables, as data.

Each family is the table printed in its paper, transcribed row by row. `plan.py` turns a table plus
(alpha, resolution, classes, ...) into concrete layers; nothing else in the package knows the layouts.

Layer names follow Keras applications (keras/src/applications/mobilenet*.py) so that their weight files load
by name; the naming templates live with each family here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Separable:
    """v1 depthwise-separable block: 3x3 depthwise (stride s) -> BN -> ReLU6 -> 1x1 pointwise to c -> BN -> ReLU6."""

    out: int
    stride: int


@dataclass(frozen=True)
class Bottleneck:
    """v2/v3 inverted residual: 1x1 expand -> kxk depthwise -> [squeeze-excite] -> 1x1 linear projection.

    `exp` is the expansion width as the v3 paper prints it ("exp size"); v2's expansion factor t is expressed
    the same way (exp = t * input width) so one builder serves both. The residual is added when stride is 1
    and input and output widths match.
    """

    kernel: int
    exp: int
    out: int
    se: bool
    act: str  # "relu6" (v2), "relu" or "hswish" (v3)
    stride: int


@dataclass(frozen=True)
class Family:
    name: str
    stem: int                 # output channels of the 3x3/s2 stem conv (before width scaling)
    stem_act: str
    stem_scales: bool         # whether alpha scales the stem (v1, v2 yes; Keras v3 keeps 16)
    blocks: tuple
    last_conv: int | None     # 1x1 conv after the blocks (v2: 1280, v3: 6 x last width), None for v1
    last_conv_act: str
    # v3: the last conv is 6x the (scaled) last block width; v2: 1280, grows only if alpha > 1
    last_conv_follows_width: bool
    head_conv: int | None     # v3's 1x1 conv after pooling, without BN ("NBN" in the paper)
    width_rule: str           # how alpha scales a width: "floor" (v1: int(c * alpha)), "v2", "v3" (see plan.py)
    dropout: float            # Keras applications' default
    imagenet_resolutions: tuple[int, ...]
    imagenet_alphas: tuple[float, ...]


def _v2_rows(rows: list[tuple[int, int, int, int]], stem: int) -> tuple[Bottleneck, ...]:
    """Expand the v2 paper's (t, c, n, s) rows into one Bottleneck per repetition."""
    blocks, width = [], stem
    for t, c, n, s in rows:
        for i in range(n):
            blocks.append(Bottleneck(kernel=3, exp=t * width, out=c, se=False, act="relu6", stride=s if i == 0 else 1))
            width = c
    return tuple(blocks)


# MobileNet v1, paper Table 1 (arXiv:1704.04861). The paper prints the 13th depthwise conv with stride 2 and
# an output of 7x7, which contradicts itself; every reference implementation uses stride 1 there.
V1 = Family(
    name="v1",
    stem=32, stem_act="relu6", stem_scales=True,
    blocks=tuple(Separable(c, s) for c, s in [
        (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
        (1024, 2), (1024, 1),
    ]),
    last_conv=None, last_conv_act="relu6", last_conv_follows_width=False, head_conv=None,
    width_rule="floor", dropout=1e-3,
    imagenet_resolutions=(128, 160, 192, 224), imagenet_alphas=(0.25, 0.5, 0.75, 1.0),
)

# MobileNet v2, paper Table 2 (arXiv:1801.04381): rows of expansion t, output channels c, repeats n, stride s.
V2 = Family(
    name="v2",
    stem=32, stem_act="relu6", stem_scales=True,
    blocks=_v2_rows([
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ], stem=32),
    last_conv=1280, last_conv_act="relu6", last_conv_follows_width=False, head_conv=None,
    width_rule="v2", dropout=0.0,
    imagenet_resolutions=(96, 128, 160, 192, 224), imagenet_alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
)

# MobileNet v3-Large, paper Table 1 (arXiv:1905.02244): kernel, exp size, #out, SE, NL, stride.
V3_LARGE = Family(
    name="v3-large",
    stem=16, stem_act="hswish", stem_scales=False,
    blocks=tuple(Bottleneck(k, e, o, se, nl, s) for k, e, o, se, nl, s in [
        (3, 16, 16, False, "relu", 1),
        (3, 64, 24, False, "relu", 2),
        (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2),
        (5, 120, 40, True, "relu", 1),
        (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hswish", 2),
        (3, 200, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1),
        (3, 480, 112, True, "hswish", 1),
        (3, 672, 112, True, "hswish", 1),
        (5, 672, 160, True, "hswish", 2),
        (5, 960, 160, True, "hswish", 1),
        (5, 960, 160, True, "hswish", 1),
    ]),
    last_conv=960, last_conv_act="hswish", last_conv_follows_width=True, head_conv=1280,
    width_rule="v3", dropout=0.2,
    imagenet_resolutions=(224,), imagenet_alphas=(0.75, 1.0),
)

# MobileNet v3-Small, paper Table 2. The paper marks SE on the final 1x1 conv (576); the released models and
# Keras applications have none there, and the paper's own MAdds/params only add up without it.
V3_SMALL = Family(
    name="v3-small",
    stem=16, stem_act="hswish", stem_scales=False,
    blocks=tuple(Bottleneck(k, e, o, se, nl, s) for k, e, o, se, nl, s in [
        (3, 16, 16, True, "relu", 2),
        (3, 72, 24, False, "relu", 2),
        (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hswish", 2),
        (5, 240, 40, True, "hswish", 1),
        (5, 240, 40, True, "hswish", 1),
        (5, 120, 48, True, "hswish", 1),
        (5, 144, 48, True, "hswish", 1),
        (5, 288, 96, True, "hswish", 2),
        (5, 576, 96, True, "hswish", 1),
        (5, 576, 96, True, "hswish", 1),
    ]),
    last_conv=576, last_conv_act="hswish", last_conv_follows_width=True, head_conv=1024,
    width_rule="v3", dropout=0.2,
    imagenet_resolutions=(224,), imagenet_alphas=(0.75, 1.0),
)

FAMILIES: dict[str, Family] = {f.name: f for f in (V1, V2, V3_SMALL, V3_LARGE)}

# Squeeze-excite bottleneck width as a fraction of the expanded width (v3 paper section 5.3).
SE_RATIO = 0.25
