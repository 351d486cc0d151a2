"""The VGG19 layer vocabulary (`conv1_1`, `relu4_2`, `pool3`, …) without importing torch.

The config validates layer names and `nst --help` lists them, so this must stay cheap to
import; the network itself lives in features.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# torchvision's VGG19 "features" stack, block by block: (number of convs, channels).
BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for block, (convs, _) in enumerate(BLOCKS, start=1):
        for conv in range(1, convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return tuple(names)


#: Every layer name a config may use, in network order (index = position in vgg19().features).
LAYER_NAMES: tuple[str, ...] = _layer_names()
_LAYER_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}
#: Indices of the conv layers in vgg19().features, in order.
CONV_INDICES: tuple[int, ...] = tuple(i for i, n in enumerate(LAYER_NAMES) if n.startswith("conv"))


def unknown_layer_message(name: str) -> str | None:
    """None for a valid layer name, else the one-line reason with the closest valid name."""
    if name in _LAYER_INDEX:
        return None
    close = difflib.get_close_matches(name, LAYER_NAMES, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"unknown VGG19 layer {name!r}{hint}; valid: conv1_1 … conv5_4, relu1_1 … relu5_4, "
        "pool1 … pool5"
    )


def layer_index(name: str) -> int:
    """Position of a named layer in vgg19().features."""
    return _LAYER_INDEX[name]


def layer_block(name: str) -> int:
    """The VGG19 block (1-5) a named layer belongs to: `relu5_1` and `pool5` are block 5."""
    return int(name.removeprefix("conv").removeprefix("relu").removeprefix("pool")[0])


def downsampling_factor(names: Iterable[str]) -> int:
    """How many times the image is halved (2**pools) before the deepest of these layers."""
    deepest = max(layer_index(n) for n in names)
    pools = sum(1 for n in LAYER_NAMES[: deepest + 1] if n.startswith("pool"))
    return 2**pools
