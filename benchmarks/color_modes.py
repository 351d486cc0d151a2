"""The colour modes side by side: how strongly each is stylised, and whether the photo's
colours survive (issue: `color: luminance` as strong as the default).

For each pair it runs nst with `color: style` (the default) and `color: luminance`, and also
scores the default run recoloured afterwards with the photo's chroma (what the
"colour transfer after a full-colour run" variant saves). Judged apart from nst's loop:
- style distance: sliced Wasserstein distance between the VGG features (relu1_1 … relu5_1)
  of the result and of the painting, averaged over the layers (lower: closer to the painting);
- chroma: mean |Cb| and |Cr| difference from the photo, in 8-bit levels (lower: the photo's
  colours kept).

    python benchmarks/color_modes.py --resolution 256 --preset fast
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluator import STYLE_LAYERS  # noqa: E402

from nst_cli import resolve_config, stylize  # noqa: E402
from nst_cli.core.color import recolor  # noqa: E402
from nst_cli.core.features import build_extractor  # noqa: E402
from nst_cli.core.pixels import resize_long_side, to_tensor  # noqa: E402
from nst_cli.io.images import load_image  # noqa: E402
from nst_cli.run.cache import ModelCache  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PAIRS = (("coffee.png", "swirls.png"), ("chelsea.png", "strokes.png"), ("rocket.jpg", "fluid.png"))


@torch.no_grad()
def style_distance(net: torch.nn.Module, image: Image.Image, style: Image.Image) -> float:
    """Mean over the style layers of the sliced Wasserstein distance of the features."""
    generator = torch.Generator().manual_seed(0)
    ours = net(to_tensor(image), list(STYLE_LAYERS))
    theirs = net(to_tensor(resize_long_side(style, max(image.size))), list(STYLE_LAYERS))
    total = 0.0
    for name in STYLE_LAYERS:
        a = ours[name][0].flatten(1).T  # [N, C]
        b = theirs[name][0].flatten(1).T
        directions = torch.randn(a.shape[1], 64, generator=generator)
        directions /= directions.norm(dim=0, keepdim=True)
        pa, pb = (a @ directions).sort(dim=0).values, (b @ directions).sort(dim=0).values
        # Compare the two distributions at the same quantiles.
        quantiles = torch.linspace(0, 1, min(len(pa), len(pb)))
        pa = torch.quantile(pa, quantiles, dim=0) if len(pa) != len(quantiles) else pa
        pb = torch.quantile(pb, quantiles, dim=0) if len(pb) != len(quantiles) else pb
        scale = pb.pow(2).mean().clamp_min(1e-12)
        total += float((pa - pb).pow(2).mean() / scale)
    return total / len(STYLE_LAYERS)


def chroma_levels(image: Image.Image, content: Image.Image) -> float:
    """Mean absolute Cb/Cr difference from the content at the image's size, in levels."""
    ours = np.asarray(image.convert("YCbCr"), dtype=np.float64)[..., 1:]
    photo = content.convert("RGB").resize(image.size, Image.Resampling.LANCZOS)
    theirs = np.asarray(photo.convert("YCbCr"), dtype=np.float64)[..., 1:]
    return float(np.abs(ours - theirs).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    net = build_extractor("caffe", list(STYLE_LAYERS))
    cache = ModelCache()
    out = args.out or Path(tempfile.mkdtemp(prefix="nst-colour-"))
    print("pair | mode | style distance | chroma levels")
    ratios = []
    for content_name, style_name in PAIRS:
        content = load_image(SAMPLES / content_name, "content")
        style = load_image(SAMPLES / style_name, "style")
        distances = {}
        for mode in ("style", "luminance"):
            config = resolve_config(
                None,
                [f"resolution={args.resolution}", f"preset={args.preset}", f"color={mode}"],
                {"content": str(SAMPLES / content_name), "style": str(SAMPLES / style_name),
                 "output": str(out / f"{Path(content_name).stem}_{mode}")},
            )  # fmt: skip
            result = stylize(config, overwrite=True, cache=cache)
            image = Image.open(result.final_image).convert("RGB")
            distances[mode] = style_distance(net, image, style)
            print(f"{content_name} × {style_name} | {mode} | {distances[mode]:.4f} | "
                  f"{chroma_levels(image, content):.2f}")  # fmt: skip
            if mode == "style":
                after = recolor(content)(image)
                after.save(out / f"{Path(content_name).stem}_recoloured.png")
                distances["recoloured"] = style_distance(net, after, style)
                print(f"{content_name} × {style_name} | style, recoloured after | "
                      f"{distances['recoloured']:.4f} | {chroma_levels(after, content):.2f}")  # fmt: skip
        ratios.append(distances["luminance"] / distances["style"])
    print(f"luminance / default style distance: {', '.join(f'{r:.2f}' for r in ratios)}")
    print(f"images in {out}")


if __name__ == "__main__":
    main()
