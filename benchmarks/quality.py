"""Quality benchmark: a config over a varied set of pairs -> contact sheet + per-layer losses.

Not a test: run it by hand when defaults or losses change, and look at the sheet.
    python benchmarks/quality.py                                  # the defaults, 512 px
    python benchmarks/quality.py --resolution 256 --variant raw="loss.normalize=false"
    python benchmarks/quality.py --variant a="weights.style=1" --variant b="weights.style=4"
    python benchmarks/quality.py --out outputs/quality --rescore  # measure kept results again
    python benchmarks/quality.py --pairs real --paintings DIR --resolution 320 --preset fast

`--pairs real` is the tuning set of real paintings (REAL below): the public-domain ones are
in samples/paintings/; four more are read from public repositories into --paintings (default
outputs/paintings; how: benchmarks/PAINTINGS.md). The paintings in jcjohnson/neural-style's
examples/ are held out as the judge: none of them, nor a copy, is in this set.

Each --variant is `label=key=value;key=value` (any config key, as --set); several variants
become columns side by side. Writes into --out (default outputs/quality):
    sheet.png       rows: pairs; columns: content | style | one result per variant
    results.json    per pair and variant: seconds and the evaluator's scores
    results.md      the same as a markdown table (mean over pairs at the bottom)
Scores: the Gram evaluator's relative errors (benchmarks/evaluator.py; `worst` is the worst
style layer) and `nst score`'s measures (style and palette distance, structure, new faces).
The pairs use only images the project may redistribute (samples/, see SOURCES.md): a
portrait, a cat, an object, a landscape and an illustration, against a fluid-art painting,
a swirling night-sky painting (large-scale structure) and big expressionist strokes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluator import STYLE_LAYERS, Evaluator  # noqa: E402

from nst_cli import stylize
from nst_cli.config.resolve import resolve_config
from nst_cli.io.images import label_font  # noqa: E402
from nst_cli.run.cache import ModelCache
from nst_cli.run.score import score_result

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PAIRS = {
    "astronaut-strokes": ("astronaut.png", "strokes.png"),  # portrait
    "chelsea-swirls": ("chelsea.png", "swirls.png"),  # animal, large-scale style
    "coffee-fluid": ("coffee.png", "fluid.png"),  # object
    "rocket-swirls": ("rocket.jpg", "swirls.png"),  # landscape
    "car-strokes": ("car.png", "strokes.png"),  # illustration, flat colours
}
# Issue 36's tuning set: styles with faces and animals in them (objects that must not be
# painted into the photo) and muted or strongly coloured palettes. `--pairs tuning`.
TUNING = {
    "rocket-astronaut": ("rocket.jpg", "astronaut.png"),  # a face as the style
    "coffee-chelsea": ("coffee.png", "chelsea.png"),  # a cat as the style
    "car-fluid": ("car.png", "fluid.png"),  # the sample job
    "chelsea-strokes": ("chelsea.png", "strokes.png"),  # an animal photo, a strong palette
    "rocket-cubist": ("rocket.jpg", "cubist.png"),  # a bright sky, a dark and muted painting
}
# Real paintings, composed (a sea, a room, a figure), two portraits as the "painting" (a face
# must not be painted into the photo) and a portrait photo (its face must stay readable).
REAL = {
    "rocket-wave": ("rocket.jpg", "wave.jpg"),  # Hokusai: no figure, a composed sea
    "chelsea-bedroom": ("chelsea.png", "vangogh-bedroom_in_arles.jpg"),  # a room in perspective
    "coffee-degas": ("coffee.png", "degas-the_dance_foyer_at_the_opera.jpg"),  # small figures
    "car-gauguin": ("car.png", "gauguin-te_fare.jpg"),  # a landscape
    "rocket-lamuse": ("rocket.jpg", "la_muse.jpg"),  # Picasso: flat shapes, two figures
    "chelsea-rain": ("chelsea.png", "rain_princess.jpg"),  # Afremov: strong palette
    "coffee-lilies": ("coffee.png", "water_lilies_crop.jpg"),  # Monet: a texture
    "car-toulouse": ("car.png", "toulouse-in_bed.png"),  # two faces the detectors miss
    "rocket-vermeer": ("rocket.jpg", "girl_with_a_pearl_earring.jpg"),  # a portrait as the painting
    "coffee-monalisa": ("coffee.png", "mona_lisa.jpg"),  # a close portrait as the painting
    "astronaut-udnie": ("astronaut.png", "udnie.jpg"),  # a portrait photo
    "astronaut-wave": ("astronaut.png", "wave.jpg"),  # a portrait photo
    "astronaut-bedroom": ("astronaut.png", "vangogh-bedroom_in_arles.jpg"),  # a portrait photo
}
ALL_PAIRS = {**PAIRS, **TUNING, **REAL}
SCORE_COLUMNS = ("style_swd", "palette_swd", "structure_ssim", "new_faces")
#: Columns about objects: faces found in the painting, relu5_1's weight share in the run (its
#: guided Gram counts as 1), and the SSIM of luminance inside the photo's face box.
OBJECT_COLUMNS = ("painting_faces", "relu5_1_share", "face_ssim", "face_kept")
CELL = 256


def _parse_variant(text: str) -> tuple[str, list[str]]:
    label, _, sets = text.partition("=")
    return label, [s for s in sets.split(";") if s.strip()]


def _thumb(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGB")
    image.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
    cell = Image.new("RGB", (CELL, CELL), (255, 255, 255))
    cell.paste(image, ((CELL - image.width) // 2, (CELL - image.height) // 2))
    return cell


def _sheet(rows: list[list[Path]], labels: list[str], names: list[str], path: Path) -> None:
    header, side = 24, 150
    sheet = Image.new("RGB", (side + CELL * len(labels), header + CELL * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    font = label_font(14)
    for column, label in enumerate(labels):
        draw.text((side + column * CELL + 6, 4), label, fill="black", font=font)
    for row, (name, cells) in enumerate(zip(names, rows, strict=True)):
        draw.text((6, header + row * CELL + CELL // 2), name, fill="black", font=font)
        for column, cell in enumerate(cells):
            sheet.paste(_thumb(cell), (side + column * CELL, header + row * CELL))
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="base config file (default: defaults)")
    parser.add_argument("--variant", action="append", default=[], help="label=key=v;key=v")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--steps", type=int, default=None, help="override steps (all variants)")
    parser.add_argument(
        "--pairs",
        default="sheet",
        help="comma-separated pair names, or `sheet` (the README's five), `tuning`, `all`",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default=None, help="the preset for every variant")
    parser.add_argument(
        "--paintings", default="outputs/paintings", help="folder of the REAL set's paintings"
    )
    parser.add_argument("--out", default="outputs/quality")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="stylise nothing: measure the results kept in --out again with `nst score` "
        "(after the evaluator changed) and rewrite results.json and results.md",
    )
    args = parser.parse_args()
    if args.rescore:
        _rescore(Path(args.out), Path(args.paintings))
        return

    variants = [_parse_variant(v) for v in args.variant] or [("defaults", [])]
    groups = {
        "sheet": list(PAIRS), "tuning": list(TUNING), "real": list(REAL), "all": list(ALL_PAIRS)
    }  # fmt: skip
    paintings = Path(args.paintings)
    pairs = [q for p in args.pairs.split(",") if p for q in groups.get(p, [p])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = ModelCache()
    evaluator = Evaluator("cpu")
    results: dict[str, dict[str, dict[str, float]]] = {}
    rows: list[list[Path]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in pairs:
            content, style = _pair_paths(pair, paintings)
            row = [content, style]
            results[pair] = {}
            for label, sets in variants:
                config = resolve_config(
                    args.config,
                    sets,
                    {
                        "content": str(content),
                        "style": str(style),
                        "resolution": args.resolution,
                        "steps": args.steps,
                        "device": args.device,
                        "preset": args.preset,
                        "output": f"{tmp}/{pair}_{label}",
                    },
                )
                config.save_every = 10**6  # frames are not what this measures
                started = time.perf_counter()
                result = stylize(config, cache=cache)
                seconds = time.perf_counter() - started
                kept = out / f"{pair}_{label}.png"
                kept.write_bytes(result.final_image.read_bytes())
                scores = evaluator.score(kept, content, style)
                scores["worst"] = max(scores[f"style.{n}"] for n in STYLE_LAYERS)
                scores.update(score_result(kept, content, style).as_dict())
                scores.update(_object_scores(kept, content, style, config, cache))
                results[pair][label] = {"seconds": seconds, **scores}
                print(
                    f"{pair:<20}{label:<14}{seconds:7.1f} s  content {scores['content']:.3f}  "
                    f"worst {scores['worst']:.3f}  "
                    + " ".join(f"{scores[f'style.{n}']:.3g}" for n in STYLE_LAYERS)
                    + "  "
                    + " ".join(f"{c} {scores[c]}" for c in (*SCORE_COLUMNS, *OBJECT_COLUMNS)),
                    flush=True,
                )
                row.append(kept)
            rows.append(row)
    labels = ["content", "style", *(label for label, _ in variants)]
    _sheet(rows, labels, pairs, out / "sheet.png")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(_markdown(results, [label for label, _ in variants]))
    print(_markdown(results, [label for label, _ in variants]))
    print(f"sheet: {out / 'sheet.png'}")


def _rescore(out: Path, paintings: Path) -> None:
    """Replace the `nst score` columns of a finished benchmark with fresh measures of the
    images it kept; the Gram evaluator's columns and the times stay as they were run."""
    results = json.loads((out / "results.json").read_text())
    for pair, by_label in results.items():
        content, style = _pair_paths(pair, paintings)
        for label, values in by_label.items():
            started = time.perf_counter()
            kept = out / f"{pair}_{label}.png"
            values.update(score_result(kept, content, style).as_dict())
            measured = _object_scores(kept, content, style, None, ModelCache())
            measured.pop("relu5_1_share")  # the run's, not the image's: kept as it was run
            values.update(measured)
            print(f"{pair:<20}{label:<14}scored in {time.perf_counter() - started:.2f} s")
    labels = list(dict.fromkeys(label for by_label in results.values() for label in by_label))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(_markdown(results, labels))
    print(_markdown(results, labels))


def _mean(values: list[float | None], column: str) -> float:
    """Geometric means (errors span decades, and one pair should not dominate); faces are
    counted; columns some pairs lack average over the pairs that have them."""
    present = [v for v in values if v is not None]
    if column in ("new_faces", "painting_faces", "face_kept"):
        return float(sum(present))
    if not present:
        return float("nan")
    return math.exp(sum(math.log(max(v, 1e-12)) for v in present) / len(present))


def _pair_paths(pair: str, paintings: Path) -> tuple[Path, Path]:
    """The photo (samples/) and the painting (samples/; the REAL set's: samples/paintings/,
    else --paintings)."""
    content, style = ALL_PAIRS[pair]
    folder = SAMPLES
    if pair in REAL:
        folder = SAMPLES / "paintings" if (SAMPLES / "paintings" / style).is_file() else paintings
    if not (folder / style).is_file():
        raise SystemExit(f"{folder / style}: missing; see benchmarks/PAINTINGS.md")
    return SAMPLES / content, folder / style


def _object_scores(
    result: Path, content: Path, style: Path, config: Any, cache: ModelCache
) -> dict[str, float | None]:
    """Faces in the painting, relu5_1's share in the run, the photo's face box's SSIM."""
    import numpy as np

    from nst_cli.core import measures

    def array(path: Path, size: tuple[int, int] | None = None) -> Any:
        image = Image.open(path).convert("RGB")
        return np.asarray(image.resize(size, Image.Resampling.LANCZOS) if size else image) / 255

    made = array(result)
    photo = array(content, (made.shape[1], made.shape[0]))
    # The photo's faces as found at its own size (a smaller copy can show a false one), in
    # the result's pixels.
    full = array(content)
    ratio = made.shape[1] / full.shape[1]
    in_photo = [
        measures.Box(*(round(v * ratio) for v in (b.x, b.y, b.width, b.height)))
        for b in measures.faces(full) or []
    ]
    face_ssim = face_kept = None
    if in_photo:
        box = max(in_photo, key=lambda b: b.width * b.height)
        crop = (slice(box.y, box.y + box.height), slice(box.x, box.x + box.width))
        face_ssim = measures.structure(made[crop], photo[crop])
        # The detector still finds the photo's face, at the same place.
        face_kept = float(any(box.overlaps(found) for found in measures.faces(made) or []))
    return {
        "painting_faces": len(measures.faces(array(style)) or []),
        "relu5_1_share": _relu5_share(config, style, cache),
        "face_ssim": face_ssim,
        "face_kept": face_kept,
    }


def _relu5_share(config: Any, style: Path, cache: ModelCache) -> float | None:
    """relu5_1's weight in the run as a share of its configured weight (guided: 1)."""
    if config is None:
        return None
    try:
        from nst_cli.run.losses import object_rules
    except ImportError:  # an nst before the rules were named
        return None
    return object_rules(config, style, cache).get("relu5_1", 1.0)


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _markdown(results: dict[str, dict[str, dict[str, float]]], labels: list[str]) -> str:
    columns = [
        "seconds",
        "content",
        "worst",
        *(f"style.{n}" for n in STYLE_LAYERS),
        *SCORE_COLUMNS,
        *OBJECT_COLUMNS,
    ]
    lines = [
        "| pair | variant | " + " | ".join(columns) + " |",
        "|" + " --- |" * (len(columns) + 2),
    ]
    for pair, by_label in results.items():
        for label in labels:
            values = by_label[label]
            lines.append(
                f"| {pair} | {label} | " + " | ".join(_cell(values.get(c)) for c in columns) + " |"
            )
    for label in labels:
        # Geometric means: errors span decades, and one pair should not dominate. Faces
        # are counted, not averaged.
        means = [_mean([results[p][label].get(c) for p in results], c) for c in columns]
        lines.append(f"| **mean** | {label} | " + " | ".join(f"{m:.3g}" for m in means) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
