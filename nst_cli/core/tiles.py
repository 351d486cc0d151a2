"""Exact tiled passes: the loss and gradient of an image larger than memory holds.

Every feature term is a function of sums over the layer's positions (F·Fᵀ for a Gram, the
moments for a Gaussian, Σ(F − P)² for the content; see `WeightedSum.sums`). A tiled
step therefore takes two passes over tiles, each tile cut with a halo as wide as the
deepest layer's reach, on the pooling grid, so the features at the tile's own positions are
the whole image's, exactly:

1. without a graph, each tile adds its own positions' sums; the loss follows from the
   totals, and so does its gradient with respect to each total (a C×C matrix per layer);
2. each tile runs again with a graph, and the gradient of Σ ⟨∂L/∂sum, tile's sum⟩ flows back
   into its pixels, halo included, and is added into the image's gradient.

The result equals the untiled loss and gradient to rounding: no seams can appear, because
nothing is stylised apart. Peak memory is set by the tile, not by the image; the second
forward pass is what it costs in time (plus the halo's overlap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nst_cli.core.layers import LAYER_NAMES, downsampling_factor, layer_index
from nst_cli.core.losses.common import Crop, Shape, Sums
from nst_cli.core.losses.total import WeightedSum
from nst_cli.core.losses.values import LossTerms

Forward = Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]]
#: Called with (tile number from 1, tiles in the pass, the pass: 1 sums, 2 gradients).
TileProgress = Callable[[int, int, int], None]


def reach(names: Sequence[str]) -> int:
    """How far (px) outside its own pixels the deepest of these layers looks: every 3×3
    convolution adds one position of its resolution on each side, every 2×2 pooling one."""
    deepest = max(layer_index(n) for n in names)
    distance, step = 0, 1
    for name in LAYER_NAMES[: deepest + 1]:
        if name.startswith("conv"):
            distance += step
        elif name.startswith("pool"):
            distance += step
            step *= 2
    return distance


def halo(names: Sequence[str]) -> int:
    """The halo a tile needs for these layers: their reach, on the pooling grid."""
    grid = downsampling_factor(names)
    return -(-reach(names) // grid) * grid


@dataclass(frozen=True)
class Tile:
    """One tile: its own pixels [top, bottom) × [left, right) and the pixels it runs on,
    the same widened by the halo (within the image). All edges but the image's lie on the
    pooling grid, so every layer's positions split between tiles without remainder."""

    top: int
    bottom: int
    left: int
    right: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    height: int
    width: int

    @property
    def padded(self) -> tuple[slice, slice]:
        """The rows and columns of the pixels this tile runs on (own + halo)."""
        return slice(self.pad_top, self.pad_bottom), slice(self.pad_left, self.pad_right)

    @property
    def index(self) -> tuple[Any, ...]:
        """The index of this tile's pixels (own + halo) in an image: (..., rows, columns)."""
        return (Ellipsis, *self.padded)

    def pixels(self, image: torch.Tensor) -> torch.Tensor:
        """The pixels this tile runs on (own + halo)."""
        return image[self.index]

    def window(self, factor: int) -> tuple[slice, slice]:
        """The tile's own positions in a whole layer that is `factor` times smaller."""
        bottom = self.bottom // factor if self.bottom < self.height else self.height // factor
        right = self.right // factor if self.right < self.width else self.width // factor
        return slice(self.top // factor, bottom), slice(self.left // factor, right)

    def own(self, features: torch.Tensor, factor: int) -> torch.Tensor:
        """The tile's own positions of a layer computed on its pixels (halo cut off)."""
        rows, columns = self.window(factor)
        top, left = self.pad_top // factor, self.pad_left // factor
        return features[
            ..., rows.start - top : rows.stop - top, columns.start - left : columns.stop - left
        ]

    def crop(self, factor: int) -> Crop:
        """Cuts a tensor laid out like a whole layer to this tile's own positions."""
        rows, columns = self.window(factor)
        return lambda tensor: tensor[..., rows, columns]


def plan_tiles(height: int, width: int, tile: int | None, layers: Sequence[str]) -> list[Tile]:
    """Tiles of about `tile` px (rounded up to the pooling grid) covering a height × width
    image, with the halo these layers need; one tile, the whole image, for None."""
    if tile is None:
        return [Tile(0, height, 0, width, 0, height, 0, width, height, width)]
    grid = downsampling_factor(layers)
    size = max(grid, -(-tile // grid) * grid)
    margin = halo(layers)
    tiles = []
    for top in range(0, height, size):
        for left in range(0, width, size):
            bottom, right = min(top + size, height), min(left + size, width)
            tiles.append(
                Tile(
                    top,
                    bottom,
                    left,
                    right,
                    max(0, top - margin),
                    min(height, bottom + margin),
                    max(0, left - margin),
                    min(width, right + margin),
                    height,
                    width,
                )  # fmt: skip
            )
    return tiles


class Tiler:
    """Runs the network over an image tile by tile: whole-image features (targets), sums,
    and a loss's value and exact gradient (`evaluate`)."""

    def __init__(
        self, forward: Forward, tiles: Sequence[Tile], progress: TileProgress | None = None
    ) -> None:
        self.forward = forward
        self.tiles = list(tiles)
        self.progress = progress

    @classmethod
    def plan(
        cls,
        forward: Forward,
        size: tuple[int, int] | torch.Size,
        tile: int | None,
        layers: Sequence[str],
        progress: TileProgress | None = None,
    ) -> Tiler:
        """Tiles of about `tile` px for an image of size (height, width); None: one tile."""
        return cls(forward, plan_tiles(int(size[0]), int(size[1]), tile, layers), progress)

    @property
    def tiled(self) -> bool:
        """Whether the image is cut at all (one tile is the whole image)."""
        return len(self.tiles) > 1

    def _passes(
        self, image: torch.Tensor, layers: list[str], stage: int
    ) -> Iterator[tuple[Tile, torch.Tensor, dict[str, torch.Tensor]]]:
        """Each tile, the pixels it ran on and its own positions' features. In the
        gradient pass (stage 2) the pixels are a leaf with a graph behind the features."""
        factors = {name: downsampling_factor([name]) for name in layers}
        for number, tile in enumerate(self.tiles, start=1):
            if self.progress is not None:
                self.progress(number, len(self.tiles), stage)
            pixels = tile.pixels(image)
            if stage == 2:
                pixels = pixels.detach().requires_grad_(True)
            features = self.forward(pixels, layers)
            yield tile, pixels, {n: tile.own(features[n], factors[n]) for n in layers}

    def shapes(self, image: torch.Tensor, channels: Mapping[str, int]) -> dict[str, Shape]:
        """Each layer's whole shape (C, H, W) for this image."""
        height, width = image.shape[-2:]
        out = {}
        for name, count in channels.items():
            factor = downsampling_factor([name])
            out[name] = (count, height // factor, width // factor)
        return out

    def collect(
        self,
        image: torch.Tensor,
        layers: Sequence[str],
        keep: Sequence[str] = (),
        sums: Callable[[dict[str, torch.Tensor], dict[str, Crop]], Sums] | None = None,
    ) -> tuple[dict[str, torch.Tensor], Sums, dict[str, Shape]]:
        """One pass without a graph: the whole image's features at the layers in `keep`
        (assembled from the tiles' own positions: keep it to layers small per pixel), the
        `sums` of the tiles' own positions added up, and every layer's whole shape."""
        layers = list(layers)
        kept: dict[str, torch.Tensor] = {}
        total: Sums = {}
        channels: dict[str, int] = {}
        with torch.no_grad():
            for tile, _, own in self._passes(image, layers, 1):
                channels = {n: f.shape[1] for n, f in own.items()}
                for name in keep:
                    rows, columns = tile.window(downsampling_factor([name]))
                    if not self.tiled:
                        kept[name] = own[name]
                        continue
                    if name not in kept:
                        shape = self.shapes(image, {name: channels[name]})[name]
                        kept[name] = own[name].new_empty((own[name].shape[0], *shape))
                    kept[name][..., rows, columns] = own[name]
                if sums is not None:
                    crops = {n: tile.crop(downsampling_factor([n])) for n in layers}
                    for key, value in sums(own, crops).items():
                        total[key] = total[key] + value if key in total else value.clone()
        return kept, total, self.shapes(image, channels)

    def accumulate(
        self,
        image: torch.Tensor,
        layers: Sequence[str],
        sums: Callable[[dict[str, torch.Tensor], dict[str, Crop]], Sums],
    ) -> tuple[Sums, dict[str, Shape]]:
        """`sums` of the tiles' own positions, added up (no graph), and the layers' shapes."""
        _, total, shapes = self.collect(image, layers, sums=sums)
        return total, shapes

    def evaluate(self, pixels: torch.Tensor, loss: WeightedSum, backward: bool = True) -> LossTerms:
        """The loss of the whole image and (with `backward`) its exact gradient, left in
        `pixels.grad`, in two passes over the tiles (see the module's docstring)."""
        layers = loss.layers
        sums, shapes = self.accumulate(pixels, layers, loss.sums)
        if not backward:
            with torch.no_grad():
                return _detached(loss.from_sums(sums, shapes, pixels.detach()))
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_(True) for k, v in sums.items()}
            image = pixels.detach().requires_grad_(True)
            terms = loss.from_sums(leaves, shapes, image)
            wanted = [*leaves.values(), image]
            *weights, direct = torch.autograd.grad(terms.total, wanted, allow_unused=True)
        gradient = direct if direct is not None else torch.zeros_like(pixels)
        pulls = {k: w for k, w in zip(leaves, weights, strict=True) if w is not None}
        factors = {name: downsampling_factor([name]) for name in layers}
        with torch.enable_grad():
            for tile, part, own in self._passes(pixels, layers, 2):
                tile_sums = loss.sums(own, {n: tile.crop(factors[n]) for n in layers})
                surrogate = sum((tile_sums[k] * w).sum() for k, w in pulls.items())
                if not isinstance(surrogate, torch.Tensor):
                    continue  # nothing in the features pulls (only image terms weigh)
                (pull,) = torch.autograd.grad(surrogate, part)
                gradient[tile.index] += pull
        pixels.grad = gradient
        return _detached(terms)


def _detached(terms: LossTerms) -> LossTerms:
    return LossTerms(terms.total.detach(), {k: v.detach() for k, v in terms.terms.items()})
