"""A grid of runs: one config, several values of one or more keys (cartesian product).

Each run gets its own folder named from its values; at the end a contact sheet (grid.png),
summary.csv and a sortable index.html sit beside them. Finished runs with the same resolved
config are skipped on a re-run; interrupted ones resume from their checkpoint.
"""

from __future__ import annotations

import csv
import glob
import html
import io
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image, ImageDraw, ImageOps

from . import __version__
from .config import (
    IMAGE_SUFFIXES,
    WEIGHT_SOURCES,
    Config,
    ConfigError,
    default_run_name,
    names_several_images,
    read_sweep_section,
    resolve_config,
    safe_yaml,
)
from .devices import resolve_device
from .errors import NSTError
from .grid import (
    ALIASES,
    GridRun,
    Param,
    parse_param,
    run_config,
    safe_name,
    split_values,
    sweep_grid,
    unique_name,
)
from .images import label_font
from .outputs import RunDir, read_loss_rows, read_run_config, save_png, write_text
from .pipeline import (
    BASE_BYTES,
    ModelCache,
    StylizeResult,
    batch_key,
    estimate_run_bytes,
    load_inputs,
    memory_limit,
    run_config_dict,
    stylize,
    stylize_batch,
)

log = logging.getLogger("nst")


@dataclass
class PlannedRun:
    name: str
    values: dict[str, Any]
    labels: dict[str, str]
    config: Config
    state: str = "new"  # new | done | resume | replace | failed
    #: Why the run failed (its image could not be read, the loss diverged, a worker died).
    error: str | None = None


@dataclass
class SweepOutcome:
    root: Path
    runs: list[PlannedRun]
    rows: list[dict[str, Any]] = field(default_factory=list)
    grid: Path | None = None
    summary: Path | None = None
    index: Path | None = None


def plan_sweep(
    config_path: Path | None,
    params: Sequence[Param],
    sets: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    output: Path | None = None,
    *,
    overwrite: bool = False,
    allow_large: bool = False,
) -> tuple[Path, list[PlannedRun]]:
    """Resolve and validate every run of the grid before any of them starts."""
    root, grid = sweep_grid(config_path, params, sets, overrides, output)
    return root, plan_grid(root, grid, overwrite=overwrite, allow_large=allow_large)


def plan_grid(
    root: Path, grid: Sequence[GridRun], *, overwrite: bool = False, allow_large: bool = False
) -> list[PlannedRun]:
    """The grid's runs (grid.sweep_grid) with the files they name read and checked."""
    runs = []
    for point in grid:
        try:
            runs.append(_plan_run(point, allow_large))
        except NSTError as exc:
            raise type(exc)(f"sweep run {point.name}: {exc}") from None
    _check_sweep_folder(root, runs, overwrite)
    return runs


def _plan_run(point: GridRun, allow_large: bool) -> PlannedRun:
    """One run of a sweep or batch: its images read and checked (sizes, memory) before the
    first run starts, and what its folder already holds."""
    load_inputs(point.config, allow_large)
    _check_weights_file(point.config)
    return PlannedRun(point.name, point.values, point.labels, point.config, _state(point.config))


#: Files a folder given as --content contributes to a batch (what Pillow reads).
BATCH_SUFFIXES = (*IMAGE_SUFFIXES, ".bmp", ".gif")


def content_files(content: Path | None) -> list[Path] | None:
    """The images a batch stylises when `content` is a folder or a glob (photos/*.jpg);
    None when it names one file."""
    if content is None or not names_several_images(content):
        return None
    text = str(content)
    if Path(text).expanduser().is_dir():
        folder = Path(text).expanduser()
        found = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in BATCH_SUFFIXES
        )
        where = f"folder {folder}"
    else:
        found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text)) if Path(p).is_file())
        where = f"pattern {text}"
    if not found:
        raise ConfigError(
            f"content: the {where} matches no image files ({', '.join(BATCH_SUFFIXES)})"
        )
    return found


def plan_batch(
    config_path: Path | None,
    sets: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    output: Path | None = None,
    *,
    overwrite: bool = False,
    allow_large: bool = False,
) -> tuple[Path, list[PlannedRun]]:
    """Every image of a content folder or glob as one run (folders named by the images'
    stems) with the same settings. An image that cannot be used is planned as a failed run,
    reported at the end, and does not stop the others."""
    base = resolve_config(config_path, sets, overrides)
    files = content_files(base.content)
    if files is None:
        raise ConfigError(f"content: {base.content} is one image, not a folder or a pattern")
    given = (overrides or {}).get("output") or output
    if given is None and base.output != Path("outputs") / default_run_name(base, config_path):
        given = base.output  # `output:` in the config file names the batch's folder
    if given is not None and Path(given).suffix.lower() in IMAGE_SUFFIXES:
        raise ConfigError(
            f"--output {given}: a batch writes one run folder per image; give a folder"
        )
    root = Path(given) if given else Path("outputs") / _batch_name(base, config_path)
    # The images come from the batch, not from a --content flag that named the folder.
    overrides = {k: v for k, v in (overrides or {}).items() if k != "content"}
    runs: list[PlannedRun] = []
    errors: list[NSTError] = []
    for path in files:
        name = unique_name(safe_name(path.stem), [run.name for run in runs])
        values, labels = {"content": str(path)}, {"content": path.name}
        config = run_config(config_path, sets, overrides, root / name, values)
        try:
            run = _plan_run(GridRun(name, values, labels, config), allow_large)
        except NSTError as exc:
            errors.append(exc)
            run = PlannedRun(name, values, labels, config, "failed", str(exc))
        runs.append(run)
    if len(errors) == len(runs):
        raise errors[0]  # nothing can run (a missing style image, say): one line, not one per image
    _check_sweep_folder(root, runs, overwrite)
    return root, runs


def _batch_name(config: Config, config_path: Path | None) -> str:
    """outputs/<config name>, or <content folder>_<style> without a config file."""
    if config_path is not None and Path(config_path).suffix.lower() != ".png":
        return Path(config_path).stem
    content = Path(str(config.content)).expanduser()
    folder = content if content.is_dir() else content.parent
    style = "+".join(s.path.stem for s in config.style_images) or "style"
    return f"{safe_name(folder.resolve().name)}_{style}"


def _check_weights_file(config: Config) -> None:
    weights = config.model.weights
    if weights not in WEIGHT_SOURCES and not Path(weights).is_file():
        raise ConfigError(f"model.weights: {weights}: weights file not found")


#: The file in a sweep folder that records which runs the sweep holds.
MANIFEST = "sweep.yaml"


def _check_sweep_folder(root: Path, runs: Sequence[PlannedRun], overwrite: bool) -> None:
    """A sweep folder holds one sweep: another one is refused unless --overwrite. The same
    sweep grown (more values, more photos in a batch's folder) is the same sweep."""
    manifest = root / MANIFEST
    if not manifest.is_file() or overwrite:
        return
    try:
        recorded = safe_yaml(manifest.read_text(encoding="utf-8"), str(manifest))
    except (OSError, UnicodeDecodeError, ConfigError):
        recorded = None
    planned = {run.name: json.dumps(run.values, sort_keys=True, default=str) for run in runs}
    before = recorded.get("runs") if isinstance(recorded, dict) else None
    if isinstance(before, dict) and all(
        planned.get(name) == json.dumps(values, sort_keys=True, default=str)
        for name, values in before.items()
    ):
        return
    raise ConfigError(
        f"{root} holds another sweep ({MANIFEST} lists other runs); pass --overwrite to replace "
        "it, or choose another --output"
    )


def write_manifest(root: Path, runs: Sequence[PlannedRun]) -> None:
    """Record the sweep's runs, so a different sweep into this folder is noticed."""
    root.mkdir(parents=True, exist_ok=True)
    data = {"nst_version": __version__, "runs": {run.name: run.values for run in runs}}
    write_text(root / MANIFEST, yaml.safe_dump(data, sort_keys=False))


def _state(config: Config) -> str:
    """done: this folder holds a completed run of the same resolved config; resume: an
    interrupted one; replace: a run of other settings; new: nothing yet."""
    run_dir = RunDir(config.output_dir)
    found = read_run_config(run_dir.config)
    if found is None:
        return "replace" if run_dir.previous_outputs() else "new"
    saved, run = found
    if saved != run_config_dict(config):
        return "replace"
    if run.get("status") == "completed" and run_dir.final.is_file():
        return "done"
    return "resume" if run_dir.checkpoint.is_file() else "replace"


#: Where the runs of a sweep or batch execute: here (one by one or batched), or as Ray tasks.
EXECUTORS = ("local", "ray")


def run_sweep(
    root: Path,
    runs: Sequence[PlannedRun],
    *,
    callbacks_for: Callable[[int, PlannedRun], Sequence[Any]] = lambda i, run: (),
    should_stop: Callable[[], bool] = lambda: False,
    on_run_done: Callable[[int, PlannedRun, StylizeResult | None], None] = lambda i, r, res: None,
    allow_large: bool = False,
    executor: str = "local",
    address: str | None = None,
    task_cpus: int = 1,
    batch: int | None = None,
) -> SweepOutcome:
    """Run every planned run not already done, then write grid.png, summary.csv and
    index.html. A run that fails is reported (run.state "failed", run.error) and the others
    go on. `executor="ray"` runs them as Ray tasks (see nst_cli.remote), the same call each,
    a CPU task with `task_cpus` threads. Locally, runs that can share a batch are optimised
    together, up to `batch` at a time (None: see plan_batches)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: use {' or '.join(EXECUTORS)}")
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch {batch}: give 1 (one run at a time) or more")
    if executor == "ray" and batch not in (None, 1):
        raise ConfigError("--batch: Ray runs each run as its own task; use --executor local")
    outcome = SweepOutcome(root, list(runs))
    if executor == "ray":
        from .remote import ray_session, run_on_ray  # Ray: an optional extra, imported if asked

        with ray_session(address) as ray:
            write_manifest(root, runs)
            run_on_ray(
                ray, runs, callbacks_for=callbacks_for, should_stop=should_stop,
                on_run_done=on_run_done, allow_large=allow_large, task_cpus=task_cpus,
            )  # fmt: skip
    else:
        write_manifest(root, runs)
        _run_here(runs, callbacks_for, should_stop, on_run_done, allow_large, batch)
    outcome.rows = [summary_row(run) for run in runs]
    write_reports(outcome, runs)
    return outcome


def _run_here(
    runs: Sequence[PlannedRun],
    callbacks_for: Callable[[int, PlannedRun], Sequence[Any]],
    should_stop: Callable[[], bool],
    on_run_done: Callable[[int, PlannedRun, StylizeResult | None], None],
    allow_large: bool,
    batch: int | None = None,
) -> None:
    """The runs in this process, sharing the network and style targets: one after another,
    or up to `batch` at a time where they can share a batch (see plan_batches)."""
    cache = ModelCache()
    for group in plan_batches(runs, batch, allow_large):
        if should_stop():
            break
        chosen = [runs[i] for i in group]
        try:
            callbacks = [callbacks_for(i, run) for i, run in zip(group, chosen, strict=True)]
            outcomes = _run_group(chosen, callbacks, should_stop, allow_large, cache)
        except torch.OutOfMemoryError:  # only a batch gets here: a lone run's is its failure
            log.warning("a batch of %d runs ran out of memory; running them one by one", len(group))
            cache = ModelCache()
            outcomes = [
                _run_group([run], [callbacks_for(i, run)], should_stop, allow_large, cache)[0]
                for i, run in zip(group, chosen, strict=True)
            ]
        for i, run, outcome in zip(group, chosen, outcomes, strict=True):
            result = None
            if isinstance(outcome, Exception):
                fail(run, str(outcome))
            elif outcome is not None:
                result = outcome
                run.state = "done" if outcome.status == "completed" else "resume"
            on_run_done(i, run, result)


def _run_group(
    group: Sequence[PlannedRun],
    callbacks: Sequence[Sequence[Any]],
    should_stop: Callable[[], bool],
    allow_large: bool,
    cache: ModelCache,
) -> list[StylizeResult | Exception | None]:
    """Each run's result, the error that failed it, or None for a run with nothing to do."""
    if len(group) > 1:
        outcomes: list[StylizeResult | Exception | None] = []
        outcomes += stylize_batch(
            [run.config for run in group], callbacks=callbacks, should_stop=should_stop,
            overwrite=True, allow_large=allow_large, cache=cache,
        )  # fmt: skip
        return outcomes
    (run,) = group
    if run.state in ("done", "failed"):
        return [None]
    try:
        result = stylize(
            run.config, callbacks=callbacks[0], should_stop=should_stop,
            resume=run.state == "resume", overwrite=run.state in ("new", "replace"),
            allow_large=allow_large, cache=cache,
        )  # fmt: skip
    except (NSTError, torch.OutOfMemoryError) as exc:
        return [exc]
    return [result]


#: Runs a sweep optimises together by default on a GPU, where one batch keeps it busier than
#: one image does. On a CPU, a batch's pass costs as much as its images' passes one after
#: another (measured: README, Performance), so there runs go one by one.
GPU_BATCH = 4


def plan_batches(
    runs: Sequence[PlannedRun], batch: int | None = None, allow_large: bool = False
) -> list[list[int]]:
    """The runs (as indices) grouped into batches, in the order their first run comes:
    new runs with the same batch key, up to `batch` of them (None: GPU_BATCH on a GPU, 1
    elsewhere) and as many as fit in memory together; every other run on its own."""
    if batch is None:
        batch = GPU_BATCH if runs and _on_gpu(runs[0].config) else 1
    groups: list[list[int]] = []
    open_groups: dict[str, tuple[list[int], int]] = {}  # key -> (group, bytes planned)
    for i, run in enumerate(runs):
        needed = _batchable_bytes(run, allow_large) if batch > 1 else None
        if needed is None:
            groups.append([i])
            continue
        key = batch_key(run.config)
        group, planned = open_groups.get(key, ([], BASE_BYTES))
        available = memory_limit(run.config.device)[0]
        if not group or len(group) >= batch or (planned + needed > available and not allow_large):
            group, planned = [], BASE_BYTES
            groups.append(group)
        group.append(i)
        open_groups[key] = (group, planned + needed)
    return groups


def _on_gpu(config: Config) -> bool:
    try:
        return resolve_device(config.device).type == "cuda"
    except NSTError:
        return False


def _batchable_bytes(run: PlannedRun, allow_large: bool) -> int | None:
    """What a new run adds to a batch's memory (its pixels' share); None for a run that goes
    alone: one to skip or resume, or whose images fail to load (its own run says why)."""
    if run.state not in ("new", "replace"):
        return None
    try:
        inputs = load_inputs(run.config, allow_large)
    except NSTError:
        return None
    return estimate_run_bytes(run.config, inputs) - BASE_BYTES


def fail(run: PlannedRun, error: str) -> None:
    """Mark a run failed, say so now (the rest go on), keep the reason for the summary."""
    run.state, run.error = "failed", error
    log.error("run %s failed: %s", run.name, error)


def summary_row(run: PlannedRun) -> dict[str, Any]:
    """Swept values, final losses, seconds and where the image is."""
    run_dir = RunDir(run.config.output_dir)
    rows = read_loss_rows(run_dir.losses)
    last = rows[-1] if rows else {}
    status = "missing"
    found = read_run_config(run_dir.config)
    if found is not None:
        status = found[1].get("status", "unknown")
    if run.error is not None:
        status = "failed"
    return {
        "run": run.name,
        **{value_column(k): run.labels[k] for k in run.values},
        "status": status,
        "total": last.get("total"),
        "content": last.get("content"),
        "style": last.get("style"),
        "tv": last.get("tv"),
        "seconds": last.get("elapsed_s"),
        "image": str(run_dir.final),
        "error": run.error or "",
    }


#: summary.csv / index.html columns that are not swept values.
REPORT_COLUMNS = ("image", "run", "status", "total", "content", "style", "tv", "seconds", "error")


def value_column(key: str) -> str:
    """The column of a swept key; `swept.content` where the key would shadow a loss column."""
    return f"swept.{key}" if key in REPORT_COLUMNS else key


def write_reports(outcome: SweepOutcome, runs: Sequence[PlannedRun]) -> None:
    """grid.png, summary.csv and index.html in the sweep folder."""
    root = outcome.root
    keys = list(runs[0].values) if runs else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(outcome.rows[0]) if outcome.rows else ["run"])
    writer.writeheader()
    writer.writerows(outcome.rows)
    outcome.summary = root / "summary.csv"
    write_text(outcome.summary, buffer.getvalue())
    outcome.grid = root / "grid.png"
    provenance = {
        "Software": f"nst {__version__}",
        "nst:version": __version__,
        "nst:sweep": yaml.safe_dump({run.name: run.values for run in runs}, sort_keys=False),
    }
    save_png(contact_sheet(runs, keys), outcome.grid, provenance)
    outcome.index = root / "index.html"
    write_text(outcome.index, index_html(outcome.rows, keys, root))


def contact_sheet(runs: Sequence[PlannedRun], keys: Sequence[str], cell: int = 256) -> Image.Image:
    """Final images in a grid: rows by the first swept key, columns by the rest; labelled."""
    if len(keys) > 1:
        rows = len(dict.fromkeys(run.labels[keys[0]] for run in runs))
        columns = math.ceil(len(runs) / rows)
    else:  # one key (a batch of photos, say): one row, wrapped into a square-ish block past 8
        count = max(len(runs), 1)
        columns = count if count <= 8 else max(8, math.ceil(math.sqrt(count)))
        rows = math.ceil(count / columns)
    label_height = 20
    sheet = Image.new("RGB", (columns * cell, rows * (cell + label_height)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for index, run in enumerate(runs):
        row, column = divmod(index, columns)
        x, y = column * cell, row * (cell + label_height)
        final = RunDir(run.config.output_dir).final
        if final.is_file():
            with Image.open(final) as image:
                # Scaled to fit the cell, up as well as down, so small runs stay visible.
                thumb = ImageOps.contain(
                    image.convert("RGB"), (cell, cell), Image.Resampling.LANCZOS
                )
            sheet.paste(
                thumb,
                (x + (cell - thumb.width) // 2, y + label_height + (cell - thumb.height) // 2),
            )
        else:
            draw.text((x + 8, y + label_height + cell // 2), "not finished", fill=(200, 80, 80))
        text = ", ".join(f"{ALIASES.get(k, k)}={run.labels[k]}" for k in keys)
        draw.text((x + 4, y + 3), text, fill=(235, 235, 235), font=label_font(14))
    return sheet


def index_html(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], root: Path) -> str:
    """A self-contained page: every run's image, values and losses; click a header to sort."""
    columns = ["image", "run", *map(value_column, keys), *REPORT_COLUMNS[2:]]
    head = (
        "".join(
            f'<th data-col="{i}">{html.escape(ALIASES.get(c, c))}</th>'
            for i, c in enumerate(columns)
        )
        + f'<th data-col="{len(columns)}">loss curves</th>'
    )

    body = []
    for row in rows:
        image = Path(row["image"])
        try:
            src = image.relative_to(root).as_posix()
        except ValueError:
            src = image.as_posix()
        cells = [
            f'<td><a href="{html.escape(src)}"><img src="{html.escape(src)}" alt="{html.escape(row["run"])}"></a></td>'
        ]
        for column in columns[1:]:
            value = row.get(column)
            shown = (
                ""
                if value is None
                else (f"{value:.6g}" if isinstance(value, float) else str(value))
            )
            sort = value if isinstance(value, int | float) else shown
            cells.append(f'<td data-sort="{html.escape(str(sort))}">{html.escape(shown)}</td>')
        plot = image.parent / "losses.png"
        if plot.is_file():
            href = html.escape(
                src.rsplit("/", 1)[0] + "/losses.png" if "/" in src else "losses.png"
            )
            cells.append(
                f'<td><a href="{href}"><img class="plot" src="{href}" alt="losses"></a></td>'
            )
        else:
            cells.append("<td></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        _PAGE.replace("{{HEAD}}", head)
        .replace("{{BODY}}", "\n".join(body))
        .replace("{{COUNT}}", str(len(rows)))
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nst sweep ({{COUNT}} runs)</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
table{border-collapse:collapse}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
th{cursor:pointer;background:#eee;position:sticky;top:0}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
img{width:160px;height:auto;display:block}img.plot{width:240px}
</style></head><body>
<h1>nst sweep: {{COUNT}} runs</h1><p>Click a column header to sort. <a href="grid.png">Contact sheet</a> · <a href="summary.csv">summary.csv</a></p>
<table id="runs"><thead><tr>{{HEAD}}</tr></thead><tbody>
{{BODY}}
</tbody></table>
<script>
document.querySelectorAll("#runs th").forEach(function (th) {
  th.addEventListener("click", function () {
    var col = +th.dataset.col, body = document.querySelector("#runs tbody");
    var asc = !th.classList.contains("asc");
    document.querySelectorAll("#runs th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.sort || "", y = b.cells[col].dataset.sort || "";
      var nx = parseFloat(x), ny = parseFloat(y);
      var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script></body></html>
"""


__all__ = [
    "Param",
    "PlannedRun",
    "SweepOutcome",
    "parse_param",
    "plan_grid",
    "plan_sweep",
    "read_sweep_section",
    "run_sweep",
    "split_values",
]
