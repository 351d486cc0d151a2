"""The pyramid preconditioner: a coarse-to-fine curvature model for the pixel L-BFGS."""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F

#: Up to this long side the pyramid applies U_k and U_kᵀ on the CPU as products with each
#: axis's 1-D interpolation matrix, several times faster than the upsampling kernels there
#: (docs/performance.md). Larger images use the kernels.
DENSE_SIDE = 2048
#: Up to this long side the products are dense (every level's columns in one product). Above
#: it each matrix is cut into bands of BAND fine pixels with the coarse cells they reach (a
#: cell reaches ~2·side pixels, so a dense product is mostly multiplications by zero). At
#: 512 px and below the extra products cost about what they save (docs/performance.md).
BANDED_ABOVE = 512
BAND = 128


class _Band(NamedTuple):
    """A block of a banded [fine, coarse] interpolation matrix: its rows `fine`, its columns
    `coarse`, and the values there (zero everywhere else in those columns)."""

    fine: slice
    coarse: slice
    block: torch.Tensor


def _bands(matrix: torch.Tensor) -> list[_Band]:
    """`matrix` [fine, coarse] cut into runs of coarse columns, each ~BAND fine rows tall."""
    fine, coarse = matrix.shape
    pieces = max(1, min(coarse, round(fine / BAND)))
    edges = torch.linspace(0, coarse, pieces + 1).round().long().tolist()
    bands = []
    for start, stop in itertools.pairwise(edges):
        rows = matrix[:, start:stop].abs().sum(dim=1).nonzero().flatten()
        low, high = int(rows[0]), int(rows[-1]) + 1
        block = matrix[low:high, start:stop].contiguous()
        bands.append(_Band(slice(low, high), slice(start, stop), block))
    return bands


def _gather_banded(image: torch.Tensor, rows: list[_Band], cols: list[_Band]) -> torch.Tensor:
    """Rᵀ·image·Q for image [N, H, W] with R, Q given as bands: [N, h, w]."""
    across = torch.cat([image[..., band.fine] @ band.block for band in cols], dim=-1)
    return torch.cat([band.block.T @ across[:, band.fine, :] for band in rows], dim=-2)


def _spread_banded(
    coarse: torch.Tensor, rows: list[_Band], cols: list[_Band], out: torch.Tensor
) -> None:
    """out += R·coarse·Qᵀ for coarse [N, h, w], out [N, H, W]."""
    down = coarse.new_zeros(coarse.shape[0], out.shape[-2], coarse.shape[-1])
    for band in rows:
        down[:, band.fine, :] += band.block @ coarse[:, band.coarse, :]
    for band in cols:
        out[..., band.fine] += down[..., band.coarse] @ band.block.T


def _interpolation(
    coarse: int, size: int, device: torch.device | None, dtype: torch.dtype
) -> torch.Tensor:
    """[size, coarse]: column j is e_j linearly upsampled to `size` (align_corners=False, as
    F.interpolate's bilinear mode does along each axis)."""
    eye = torch.eye(coarse, device=device, dtype=dtype).unsqueeze(0)
    return F.interpolate(eye, size=size, mode="linear", align_corners=False)[0].T.contiguous()


class Pyramid:
    """M for pixels of one shape (see the module docstring), applied as `M(v)`, with the
    quadratic form v·M·v that scales the starting matrix from the gathers alone.

    U_k is bilinear upsampling from the k-th grid and U_kᵀ its adjoint. Bilinear upsampling is
    separable, U_k·C = R_k·C·Q_kᵀ with R_k, Q_k the 1-D interpolation matrices of the rows and
    the columns, so on the CPU up to DENSE_SIDE both are matrix products (`mode` "dense", or
    "banded" above BANDED_ABOVE); elsewhere, the upsampling kernel and its backward kernel,
    called directly (no graph, no upsampled grid of zeros)."""

    def __init__(
        self,
        shape: torch.Size,
        sides: list[int],
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        boost: float = 1.0,
    ) -> None:
        self.shape = shape
        height, width = shape[-2:]
        self.levels: list[tuple[list[int], float]] = []
        for side in sides:
            grid = [-(-height // side), -(-width // side)]
            # Per pixel of the coarse grid, Uᵀ sums ~area fine pixels: weighting by
            # side / area boosts a flat image by `side`.
            area = height * width / (grid[0] * grid[1])
            self.levels.append((grid, boost * side / area))
        # On a GPU the kernels stay: they are fast there, and matrix products would run in
        # TF32 (the default `precision`), rounding M to ~1e-3.
        on_cpu = device is None or torch.device(device).type == "cpu"
        long_side = max(height, width)
        self.mode = "kernels"
        if on_cpu and long_side <= DENSE_SIDE:
            self.mode = "dense" if long_side <= BANDED_ABOVE else "banded"
        if self.mode == "kernels":
            return
        rows = [_interpolation(grid[0], height, device, dtype) for grid, _ in self.levels]
        cols = [_interpolation(grid[1], width, device, dtype) for grid, _ in self.levels]
        if self.mode == "dense":
            self._rows = rows
            self._cols = torch.cat(cols, dim=1)
            self._widths = [grid[1] for grid, _ in self.levels]
        else:
            self._bands = [(_bands(r), _bands(c)) for r, c in zip(rows, cols, strict=True)]

    def _gathers(self, image: torch.Tensor) -> list[torch.Tensor]:
        """U_kᵀ·image for every level, each [B, C, *grid]."""
        batch, channels, height, width = self.shape
        if self.mode == "kernels":
            return [
                torch.ops.aten.upsample_bilinear2d_backward(
                    image, [height, width], [batch, channels, *grid], False
                )
                for grid, _ in self.levels
            ]
        if self.mode == "banded":
            flat = image.reshape(batch * channels, height, width)
            return [
                _gather_banded(flat, rows, cols).view(batch, channels, *grid)
                for (rows, cols), (grid, _) in zip(self._bands, self.levels, strict=True)
            ]
        across = (image.reshape(-1, width) @ self._cols).view(batch * channels, height, -1)
        return [
            (rows.T @ part).view(batch, channels, *grid)
            for rows, part, (grid, _) in zip(
                self._rows, across.split(self._widths, dim=2), self.levels, strict=True
            )
        ]

    def _spread_sum(self, coarse: list[torch.Tensor]) -> torch.Tensor:
        """Σ_k U_k·coarse_k, [B, C, H, W]."""
        batch, channels, height, width = self.shape
        if self.mode == "banded":
            out = coarse[0].new_zeros(batch * channels, height, width)
            for level, (rows, cols) in zip(coarse, self._bands, strict=True):
                _spread_banded(level.reshape(batch * channels, *level.shape[-2:]), rows, cols, out)
            return out.view(self.shape)
        if self.mode == "kernels":
            out = F.interpolate(
                coarse[0], size=(height, width), mode="bilinear", align_corners=False
            )
            for level in coarse[1:]:
                out += F.interpolate(
                    level, size=(height, width), mode="bilinear", align_corners=False
                )
            return out
        down = torch.cat(
            [
                rows @ level.reshape(batch * channels, *level.shape[-2:])
                for rows, level in zip(self._rows, coarse, strict=True)
            ],
            dim=2,
        )
        return (down.view(-1, down.shape[-1]) @ self._cols.T).view(self.shape)

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        # U·Uᵀ with U the bilinear spread: symmetric by construction, and smooth (block
        # averages spread back as blocks imprinted their seams on the image).
        image = vector.view(self.shape)
        coarse = [c.mul_(w) for c, (_, w) in zip(self._gathers(image), self.levels, strict=True)]
        return (image + self._spread_sum(coarse)).flatten()

    def quadratic(self, vector: torch.Tensor) -> torch.Tensor:
        """v·M·v = v·v + Σ_k w_k·|U_kᵀ v|²: gathers only."""
        total = torch.dot(vector, vector)
        for c, (_, weight) in zip(self._gathers(vector.view(self.shape)), self.levels, strict=True):
            total = total + weight * c.pow(2).sum()
        return total


@functools.lru_cache(maxsize=4)
def pyramid(
    shape: torch.Size,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    boost: float = 1.0,
) -> Pyramid | None:
    """M for pixels of this shape: grids down to cells of a quarter of the short side, each
    weighted by its cell's side times `boost`, so the boost follows the image's size. None
    where there is nothing to coarsen (not an image, or too small). Kept per shape: the
    optimiser asks for it at every step, and its matrices are built once."""
    if len(shape) != 4:
        return None
    sides = [2**k for k in range(1, 16) if 2**k <= min(shape[-2:]) // 4]
    return Pyramid(shape, sides, device, dtype, boost) if sides else None
