"""The networks and style targets a process keeps between runs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from nst_cli.config.models import Config
from nst_cli.core.devices import (
    configure_precision,
    resolve_device,
    resolve_precision,
    runs_channels_last,
)
from nst_cli.core.features import FeatureExtractor, build_extractor
from nst_cli.core.losses.guided import masks_at_layers
from nst_cli.core.losses.total import target_sums, targets_from_sums
from nst_cli.core.objects import Fraction, object_boxes, object_layers, texture_shares
from nst_cli.core.tiles import Tiler
from nst_cli.run.inputs import layer_fits

log = logging.getLogger(__name__)


#: Style targets kept between runs (a few MB each: one per style, scale and content shape).
MAX_CACHED_TARGETS = 32


class ModelCache:
    """Keeps loaded networks and style targets between runs (a sweep reuses them)."""

    def __init__(self) -> None:
        self._extractors: dict[tuple[Any, ...], FeatureExtractor] = {}
        self._targets: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._shares: dict[tuple[Any, ...], dict[str, float]] = {}
        self._objects: dict[tuple[Any, ...], list[Fraction]] = {}
        #: The images whose faces a run has said (a clip says its first frame's once).
        self._said: set[tuple[Any, ...]] = set()
        #: What it has made so far: networks built and style targets computed (a sweep's
        #: runs share one of each; a long-lived process can watch them).
        self.made = {"networks": 0, "style targets": 0}

    def network(self, config: Config) -> tuple[torch.device, str, FeatureExtractor]:
        """What a run (or a clip's frame) computes on: the device and precision the config
        asks for, decided (`auto`) and set up, and the network for its layers there."""
        device = resolve_device(config.device)
        precision = resolve_precision(device, config.precision)
        configure_precision(device, precision)
        return device, precision, self.extractor(config, config.network_layers, device, precision)

    def extractor(
        self, config: Config, layers: Sequence[str], device: torch.device, precision: str
    ) -> FeatureExtractor:
        """The network for these layers on `device`, set to run at `precision` (resolved)."""
        model = config.model
        # The deepest layer decides the truncation; a deeper network serves shallower runs too.
        key = (
            model.weights,
            model.pooling,
            model.preprocessing,
            config.seed if model.weights == "random" else None,
            str(device),
        )
        cached = self._extractors.get(key)
        if cached is None or not all(layer_fits(cached, n) for n in layers):
            cached = build_extractor(
                model.weights, layers, model.pooling, model.preprocessing, config.seed
            ).to(device)
            self.made["networks"] += 1
            self._extractors[key] = cached
            self._targets.clear()
            self._shares.clear()
            self._compiled.pop(key, None)
        # How it runs may differ between the runs of a sweep; what it computes does not.
        return cached.configure(
            precision="bf16" if precision == "bf16" else "fp32",
            low_memory=config.memory == "low",
            channels_last=runs_channels_last(torch.device(device)),
        )

    def forward(self, config: Config, extractor: FeatureExtractor) -> Callable[..., Any]:
        """What the optimisation loop calls: the extractor, or its torch.compile'd form
        (compiled once per network and kept, so a sweep pays the compile once)."""
        if not config.compile:
            return extractor
        key = next(k for k, v in self._extractors.items() if v is extractor)
        if key not in self._compiled:
            self._compiled[key] = torch.compile(extractor)
        return self._compiled[key]

    def faces(
        self,
        image: np.ndarray,
        key: tuple[Any, ...],
        said: str | Callable[[list[Fraction]], str],
    ) -> list[Fraction]:
        """The faces found in an image (H×W×3 in [0, 1], at its own size; core.objects),
        looked for once per image (by its pixels: a sweep's runs share the answer, a clip's
        frames each get their own) and said in one line once per `key` (its path first):
        `said` (or what it gives for the boxes found), with {where}, {it} (them),
        {they}, {its} and {be} for what was found."""
        digest = (image.shape, hashlib.blake2b(image.tobytes(), digest_size=16).digest())
        memo = (*key, digest)
        cached = self._objects.get(memo)
        if cached is None:
            cached = object_boxes(image)
            if cached and key not in self._said:
                self._said.add(key)
                one = len(cached) == 1
                where = ", ".join(_where(box) for box in cached)
                line = said if isinstance(said, str) else said(cached)
                log.info(
                    "%s: %s",
                    key[0],
                    line.format(
                        where=where,
                        it="it" if one else "them",
                        they="it" if one else "they",
                        its="its" if one else "their",
                        be="is" if one else "are",
                    ),
                )
            self._objects[memo] = cached
        return cached

    def texture_shares(
        self,
        extractor: FeatureExtractor,
        painting: torch.Tensor,
        key: tuple[Any, ...],
        layers: dict[str, float],
    ) -> dict[str, float]:
        """How much of each object-block style layer this painting keeps (core.objects),
        measured once per painting and network: the answer does not depend on the scale."""
        full_key = (id(extractor), key, tuple(object_layers(layers)))
        cached = self._shares.get(full_key)
        if cached is None:
            cached = texture_shares(extractor, painting, layers)
            turned = {name: share for name, share in cached.items() if share < 1.0}
            if turned:
                log.info(
                    "%s: %s; its deepest features are objects (a face, an animal), not "
                    "texture, so they are not painted into the photo (loss.objects: allow "
                    "keeps them)",
                    key[0],
                    ", ".join(
                        f"{name} at {share:.2f} of its weight" for name, share in turned.items()
                    ),
                )
            self._shares[full_key] = cached
        return cached

    def style_targets(
        self,
        extractor: FeatureExtractor,
        style: torch.Tensor,
        key: tuple[Any, ...],
        layers: dict[str, float],
        form: str = "mean",
        statistic: str = "gram",
        tile: int | None = None,
        keep: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """The style image's targets at these layers, computed once (in tiles of about
        `tile` px when the image is that large) and kept. `keep` ([1, 1, H, W] at the
        image's size): the object block's Grams are guided by it (core.objects.object_mask);
        `key` must tell such targets apart."""
        full_key = (id(extractor), key, tuple(layers), form, statistic)
        cached = self._targets.get(full_key)
        if cached is None:
            tiler = Tiler.plan(extractor, style.shape[-2:], tile, list(layers))
            masks = (
                masks_at_layers(keep.to(style.device), object_layers(layers))
                if keep is not None
                else {}
            )
            sums, shapes = tiler.accumulate(
                style,
                list(layers),
                lambda features, crops: target_sums(features, layers, statistic, masks, crops),
            )
            cached = targets_from_sums(sums, shapes, form, statistic)
            self.made["style targets"] += 1
            if len(self._targets) >= MAX_CACHED_TARGETS:  # a batch of many photo sizes
                self._targets.pop(next(iter(self._targets)))
            self._targets[full_key] = cached
        return cached


def _where(box: Fraction) -> str:
    """'a face at the upper left (20% of its width)': where a found face is, in words."""
    left, top, right, bottom = box
    across = ("left", "centre", "right")[min(2, int((left + right) / 2 * 3))]
    down = ("upper", "middle", "lower")[min(2, int((top + bottom) / 2 * 3))]
    place = "centre" if (across, down) == ("centre", "middle") else f"{down} {across}"
    return f"a face at the {place} ({(right - left):.0%} of its width)"
