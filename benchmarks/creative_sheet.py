"""Make docs/creative.jpg: astronaut × swirls at 256 px, --preset fast, in each colour mode and
with the Wasserstein style loss, labelled, beside the two inputs.

    python benchmarks/creative_sheet.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_cli import resolve_config, stylize  # noqa: E402
from nst_cli.io.images import label_font  # noqa: E402
from nst_cli.run.cache import ModelCache  # noqa: E402

CELL = 216
PANELS = (
    ("color: style (default)", []),
    ("color: luminance", ["color=luminance"]),
    ("color: histogram", ["color=histogram"]),
    ("loss.style: wasserstein", ["loss.style=wasserstein"]),
)


def main() -> None:
    content, style = ROOT / "samples" / "astronaut.png", ROOT / "samples" / "swirls.png"
    images = [("content", Image.open(content)), ("style", Image.open(style))]
    cache = ModelCache()
    with tempfile.TemporaryDirectory() as tmp:
        for label, sets in PANELS:
            config = resolve_config(
                None, ["resolution=256", "preset=fast", *sets],
                {"content": str(content), "style": str(style), "output": f"{tmp}/{len(images)}"},
            )  # fmt: skip
            result = stylize(config, cache=cache, progress=True)
            images.append((label, Image.open(result.final_image).convert("RGB")))
    sheet = Image.new("RGB", (CELL * len(images) + 4 * (len(images) - 1), CELL + 28), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (label, image) in enumerate(images):
        x = index * (CELL + 4)
        thumb = image.convert("RGB").resize((CELL, CELL), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x, 28))
        draw.text((x + 4, 6), label, fill="black", font=label_font(14))
    sheet.save(ROOT / "docs" / "creative.jpg", quality=88)
    print(f"wrote {ROOT / 'docs' / 'creative.jpg'}", file=sys.stderr)


if __name__ == "__main__":
    main()
