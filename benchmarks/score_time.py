"""How long `nst score` takes for one result, and where the time goes.

Not a test: run it by hand on the machine you report, e.g.
    python benchmarks/score_time.py                                   # a 512 px result
    python benchmarks/score_time.py --result outputs/run/final.png --content c.jpg --style s.png
Without --result, the content photo brought to --size px stands in for a result (the time
does not depend on what the pixels show, except that a face in the result sends the search
to the photo too). Reports, after torch has loaded:
    first     score_result's first call in the process (network read, painting measured)
    again     a further call on the same painting (what each run of a scored sweep costs)
and, for the further call, its parts: the result's VGG19 pass, the sliced distances, the
face search and the palette distance.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nst_cli.core import measures
from nst_cli.core.pixels import fit_long_side, resize_to
from nst_cli.io.images import load_image
from nst_cli.run import score as scoring

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", type=Path, default=None)
    parser.add_argument("--content", type=Path, default=SAMPLES / "rocket.jpg")
    parser.add_argument("--style", type=Path, default=SAMPLES / "swirls.png")
    parser.add_argument("--size", type=int, default=512, help="long side of the stand-in")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        result = args.result
        if result is None:
            photo = load_image(args.content, "content")
            result = Path(tmp) / "result.png"
            resize_to(photo, fit_long_side(photo.size, args.size)).save(result)
        started = time.perf_counter()
        scoring.score_result(result, args.content, args.style)
        first = time.perf_counter() - started
        again = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            scoring.score_result(result, args.content, args.style)
            again.append(time.perf_counter() - started)
        parts = _parts(result, args.content, args.style, args.repeats)
    print(f"result {result} · {torch.get_num_threads()} torch threads")
    print(f"first  {first:.3f} s")
    print(f"again  {statistics.median(again):.3f} s (median of {args.repeats})")
    for name, seconds in parts.items():
        print(f"  {name:<18}{seconds:.3f} s")


def _parts(result: Path, content: Path, style: Path, repeats: int) -> dict[str, float]:
    """The median time of each part of a further call, timed one by one."""
    made = load_image(result, "result")
    photo = scoring._array(resize_to(load_image(content, "content"), made.size))
    painting = load_image(style, "style")
    painting = resize_to(painting, fit_long_side(painting.size, max(made.size)))
    array, theirs = scoring._array(made), scoring._painting_features(style, painting)
    layers = list(measures.STYLE_LAYERS)
    with torch.no_grad():
        ours = scoring._network()(scoring._tensor(scoring._measured(made)), layers)
    jobs = {
        "VGG19 (result)": lambda: scoring._network()(
            scoring._tensor(scoring._measured(made)), layers
        ),
        "sliced distances": lambda: measures.style_distance(ours, theirs),
        "face search": lambda: measures.new_faces(array, photo),
        "palette": lambda: measures.palette_distance(array, scoring._array(painting)),
    }
    out = {}
    for name, job in jobs.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            with torch.no_grad():
                job()
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times)
    return out


if __name__ == "__main__":
    main()
