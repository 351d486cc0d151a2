"""The studio's page (the `[studio]` extra): Gradio components wired to `actions.Studio`. Tabs: Stylise (a photo and
a painting, the main settings and every config key, progress and the result with its score
and command line), Compare (one setting over several values, side by side), Runs (every run
in the output folder, the CLI's included: continue, enlarge, animate, download)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import gradio as gr

from nst_cli.config.choices import COLOR_MODES, PRESETS
from nst_cli.config.models import Config
from nst_cli.errors import NSTError
from nst_cli.studio.actions import Finished, Studio, Update
from nst_cli.studio.runs import RunEntry
from nst_cli.studio.settings import FORMATS, MAIN_KEYS, AdvancedKey, advanced_fields

#: The style weight's slider: nst's useful range (weights.style multiplies the default balance).
STYLE_WEIGHT_RANGE = (0.1, 20.0)
#: The resolution slider: thumbnails to a large print's first pass (bigger: the CLI's tiles).
RESOLUTION_RANGE = (64, 2048)
#: How many lines of notes (warnings, infos) the progress box shows.
NOTE_LINES = 6


def _status(update: Update) -> str:
    notes = update.notes[-NOTE_LINES:]
    return "\n".join([update.line, *notes])


def _score_markdown(finished: Finished | None) -> str:
    if finished is None:
        return ""
    if finished.score is None:
        return f"*Not scored: {finished.score_note}*" if finished.score_note else ""
    rows = ["| measure | value | meaning |", "| --- | --- | --- |"]
    rows += [f"| {name} | {value} | {meaning} |" for name, value, meaning in finished.score]
    return "\n".join(rows)


def _stopper(studio: Studio) -> Any:
    """Stop's handler: the job of this page stops after its current step."""

    def stop(job: str | None) -> None:
        studio.jobs.stop(job)

    return stop


def _error(exc: NSTError) -> gr.Error:
    return gr.Error(str(exc), print_exception=False)


def _result_values(update: Update) -> tuple[Any, ...]:
    """(job, progress, image, downloads, score, settings, command) for one Update."""
    finished = update.finished
    files = [str(p) for p in finished.files] if finished else None
    return (
        update.job,
        _status(update),
        str(update.image) if update.image else None,
        files,
        _score_markdown(finished),
        finished.settings if finished else "",
        finished.command if finished else "",
    )


def _stream(updates: Iterator[Update]) -> Iterator[tuple[Any, ...]]:
    try:
        for update in updates:
            yield _result_values(update)
    except NSTError as exc:
        raise _error(exc) from None


def _elem(key: str) -> str:
    """The page element of an advanced key (`adv-optimizer-lr`), for tests and styling."""
    return "adv-" + key.replace(".", "-").replace("_", "-")


def _advanced_component(key: AdvancedKey) -> gr.components.Component:
    info = key.description[:300]
    if key.choices is not None:
        return gr.Dropdown(
            list(key.choices), value=key.default, label=key.key, info=info, elem_id=_elem(key.key)
        )
    return gr.Textbox(
        value=key.default, label=key.key, info=info, max_lines=1, elem_id=_elem(key.key)
    )


def build(studio: Studio) -> gr.Blocks:
    """The whole page, its events wired to `studio`."""
    with gr.Blocks(title="nst studio", analytics_enabled=False) as page:
        gr.Markdown(
            "# nst studio\nA photo and a painting in, a new image out: the photo's structure "
            f"in the painting's texture. Runs are ordinary run folders in `{studio.output}`; "
            "`nst stylize --resume` continues them."
        )
        job = gr.State(None)
        main_inputs, request = _stylise_tab(studio, job)
        _compare_tab(studio, job, main_inputs, request)
        _video_tab(studio)
        _runs_tab(studio, page)
    return page


def _stylise_tab(studio: Studio, job: gr.State) -> tuple[list[Any], Any]:
    """A photo and a painting, the main settings and every config key; the run's progress
    and result. Returns the tab's inputs and how they become a Request (Compare reuses both)."""
    defaults = Config()
    samples = [str(p) for p in studio.uploads.samples]
    keys = advanced_fields()
    with gr.Tab("Stylise", id="stylise"):
        with gr.Row():
            content = gr.Image(type="filepath", label="Photo", elem_id="photo", sources=["upload", "clipboard"], height=280)  # fmt: skip
            style = gr.Image(type="filepath", label="Painting", elem_id="painting", sources=["upload", "clipboard"], height=280)  # fmt: skip
        with gr.Row():
            content_sample = gr.Dropdown(samples, value=None, label="…or a sample photo")
            style_sample = gr.Dropdown(samples, value=None, label="…or a sample painting")
        content_sample.change(
            lambda p: p, content_sample, content, queue=False, api_visibility="private"
        )
        style_sample.change(lambda p: p, style_sample, style, queue=False, api_visibility="private")
        with gr.Row():
            preset = gr.Radio(list(PRESETS), value=defaults.preset, label="Preset",
                              info="fast / balanced / quality: how many steps")  # fmt: skip
            color = gr.Radio(list(COLOR_MODES), value=defaults.color, label="Colours",
                             info="style: the painting's palette; luminance: the photo's colours")  # fmt: skip
            output_format = gr.Radio(list(FORMATS), value="PNG", label="Download as")
        with gr.Row():
            style_weight = gr.Slider(*STYLE_WEIGHT_RANGE, value=defaults.weights.style, step=0.1,
                                     label="Style weight", info="more painting ⟷ more photo")  # fmt: skip
            resolution = gr.Slider(*RESOLUTION_RANGE, value=defaults.resolution, step=16,
                                   label="Resolution (long side, px)", elem_id="resolution")  # fmt: skip
            style_scale = gr.Slider(0.25, 2.0, value=defaults.style_scale, step=0.05,
                                    label="Style scale", info="the painting's strokes: smaller ⟷ larger")  # fmt: skip
        name = gr.Textbox(label="Run name", placeholder="photo_painting (a new folder each run)", max_lines=1)  # fmt: skip
        with gr.Accordion("Advanced: every config key", open=False):
            advanced = [_advanced_component(key) for key in keys]
        with gr.Row():
            run = gr.Button("Stylise", variant="primary", elem_id="run")
            stop = gr.Button("Stop (keeps the work)", variant="stop")
        progress = gr.Textbox(label="Progress", lines=3, interactive=False, elem_id="progress")
        with gr.Row():
            image = gr.Image(
                label="Result", type="filepath", interactive=False, height=480, elem_id="result"
            )
            with gr.Column():
                downloads = gr.File(label="Download", file_count="multiple", interactive=False)
                score = gr.Markdown()
        command = gr.Textbox(label="The same run from a terminal", interactive=False, buttons=["copy"])  # fmt: skip
        with gr.Accordion("Settings of this run (config.yaml)", open=False):
            settings = gr.Code(language="yaml", interactive=False)
    main_inputs = [content, style, preset, style_weight, color, resolution, style_scale,
                   output_format, name, *advanced]  # fmt: skip
    results = [job, progress, image, downloads, score, settings, command]

    def request(values: Sequence[Any]) -> Any:
        photo, painting, *main, fmt, label = values[:9]
        chosen = dict(zip(MAIN_KEYS, main, strict=True))
        chosen["resolution"] = int(chosen["resolution"])
        answers = dict(zip((k.key for k in keys), values[9:], strict=True))
        return studio.request(photo, painting, chosen, fmt, label or "", answers)

    def on_run(*values: Any) -> Iterator[tuple[Any, ...]]:
        try:
            asked = request(values)
        except NSTError as exc:
            raise _error(exc) from None
        yield from _stream(studio.stylize(asked))

    run.click(on_run, main_inputs, results, concurrency_id="run", api_name="stylize")
    stop.click(_stopper(studio), job, None, concurrency_limit=None, api_name="stop")

    return main_inputs, request


def _compare_tab(studio: Studio, job: gr.State, main_inputs: list[Any], request: Any) -> None:
    """The Stylise tab's run once per value of one setting, side by side and scored; one
    picked and continued at a larger size."""
    with gr.Tab("Compare", id="compare"):
        gr.Markdown("The Stylise tab's photo, painting and settings, once per value.")
        with gr.Row():
            key = gr.Textbox(value="weights.style", label="Setting", max_lines=1)
            values = gr.Textbox(value="0.5,2,8", label="Values (comma-separated)", max_lines=1)  # fmt: skip
        with gr.Row():
            compare = gr.Button("Compare", variant="primary", elem_id="compare")
            compare_stop = gr.Button("Stop (keeps the work)", variant="stop")
        compare_progress = gr.Textbox(label="Progress", lines=3, interactive=False)
        gallery = gr.Gallery(
            label="Side by side",
            columns=4,
            height=420,
            elem_id="compare-gallery",
            preview=False,
            object_fit="contain",
        )
        table = gr.Dataframe(
            label="Scores (click a heading to sort)",
            interactive=False,
            headers=["run", "value", "status", "style_swd", "structure_ssim"],
        )
        compare_command = gr.Textbox(label="The same sweep from a terminal", interactive=False, buttons=["copy"], elem_id="compare-command")  # fmt: skip
        picked = gr.State(None)
        shown_runs = gr.State([])  # the gallery's run folders, in its order
        with gr.Row():
            larger = gr.Slider(*RESOLUTION_RANGE, value=1024, step=16, label="Continue the picked run at", elem_id="larger")  # fmt: skip
            enlarge = gr.Button("Continue at this size", elem_id="enlarge")
        enlarge_progress = gr.Textbox(label="Picked", lines=2, interactive=False, elem_id="picked")
        enlarge_image = gr.Image(
            label="Larger", type="filepath", interactive=False, elem_id="enlarged", height=420
        )

    def on_compare(setting: str, listed: str, *values: Any) -> Iterator[tuple[Any, ...]]:
        try:
            asked = request(values)
            for update in studio.compare(asked, setting.strip(), listed.strip()):
                items = [(str(p), c) for p, c, _ in update.gallery]
                folders = [str(f) for _, _, f in update.gallery]
                rows = _table(update.rows)
                command_line = update.finished.command if update.finished else ""
                yield update.job, _status(update), items, rows, command_line, folders
        except NSTError as exc:
            raise _error(exc) from None

    compare.click(on_compare, [key, values, *main_inputs],
                  [job, compare_progress, gallery, table, compare_command, shown_runs],
                  concurrency_id="run", api_name="compare")  # fmt: skip
    compare_stop.click(
        _stopper(studio), job, None, concurrency_limit=None, api_visibility="private"
    )

    def on_pick(folders: list[str], evt: gr.SelectData) -> tuple[str | None, str]:
        index = evt.index if isinstance(evt.index, int) else -1
        folder = folders[index] if 0 <= index < len(folders) else None
        return folder, f"picked {folder}" if folder else "pick a run in the gallery"

    gallery.select(
        on_pick, shown_runs, [picked, enlarge_progress], queue=False, api_visibility="private"
    )

    def on_enlarge(folder: str | None, size: float) -> Iterator[tuple[Any, ...]]:
        if not folder:
            raise gr.Error("pick a run in the gallery first", print_exception=False)
        for values in _stream(studio.enlarge(folder, int(size))):
            yield values[0], values[1], values[2]

    enlarge.click(on_enlarge, [picked, larger], [job, enlarge_progress, enlarge_image],
                  concurrency_id="run", api_name="enlarge")  # fmt: skip


def _video_tab(studio: Studio) -> None:
    """A clip and a painting in, the clip stylised frame by frame without flicker out."""
    defaults = Config()
    with gr.Tab("Video", id="video"):
        with gr.Row():
            clip = gr.Video(label="Clip", sources=["upload"], elem_id="clip", height=280)
            painting = gr.Image(type="filepath", label="Painting", sources=["upload", "clipboard"],
                                height=280, elem_id="clip-painting")  # fmt: skip
        with gr.Row():
            clip_sample = gr.Dropdown([str(p) for p in studio.uploads.clips], value=None,
                                      label="…or the sample clip")  # fmt: skip
            painting_sample = gr.Dropdown([str(p) for p in studio.uploads.samples], value=None,
                                          label="…or a sample painting")  # fmt: skip
        clip_sample.change(lambda p: p, clip_sample, clip, queue=False, api_visibility="private")
        painting_sample.change(lambda p: p, painting_sample, painting, queue=False,
                               api_visibility="private")  # fmt: skip
        with gr.Row():
            preset = gr.Radio(list(PRESETS), value="fast", label="Preset")
            weight = gr.Slider(*STYLE_WEIGHT_RANGE, value=defaults.weights.style, step=0.1,
                               label="Style weight")  # fmt: skip
            resolution = gr.Slider(*RESOLUTION_RANGE, value=320, step=16,
                                   label="Resolution (long side, px)", elem_id="clip-resolution")  # fmt: skip
            frames = gr.Number(value=0, precision=0, label="Frames (0: the whole clip)",
                               elem_id="clip-frames")  # fmt: skip
        name = gr.Textbox(label="Run name", placeholder="clip_painting", max_lines=1)
        with gr.Row():
            run = gr.Button("Stylise the clip", variant="primary", elem_id="clip-run")
            stop = gr.Button("Stop (keeps finished frames)", variant="stop")
        job = gr.State(None)
        progress = gr.Textbox(label="Progress", lines=3, interactive=False, elem_id="clip-progress")
        with gr.Row():
            newest = gr.Image(label="Newest frame", type="filepath", interactive=False, height=320)
            result = gr.Video(
                label="Stylised clip", interactive=False, height=320, elem_id="clip-result"
            )
        files = gr.File(label="Download", file_count="multiple", interactive=False)
        command = gr.Textbox(label="The same run from a terminal", interactive=False, buttons=["copy"])  # fmt: skip

    def on_run(source: str | None, style: str | None, chosen_preset: str, style_weight: float,
               size: float, count: float | None, label: str) -> Iterator[tuple[Any, ...]]:  # fmt: skip
        main = {"preset": chosen_preset, "weights.style": style_weight,
                "resolution": int(size), "video.max_frames": int(count) if count else None}  # fmt: skip
        try:
            for update in studio.video(source, style, main, label or ""):
                finished = update.finished
                clip_out = str(finished.clip) if finished and finished.clip else None
                values = _result_values(update)
                yield values[0], values[1], values[2], clip_out, values[3], values[6]
        except NSTError as exc:
            raise _error(exc) from None

    run.click(on_run, [clip, painting, preset, weight, resolution, frames, name],
              [job, progress, newest, result, files, command],
              concurrency_id="run", api_name="video")  # fmt: skip
    stop.click(_stopper(studio), job, None, concurrency_limit=None, api_visibility="private")


def _table(rows: Sequence[dict[str, Any]]) -> Any:
    if not rows:
        return None
    import pandas as pd  # Gradio's own dependency: its Dataframe sorts by column

    items = [{k: v for k, v in row.items() if k not in ("image", "error")} for row in rows]
    return pd.DataFrame(items)


def _runs_tab(studio: Studio, page: gr.Blocks) -> None:
    """Every run in the output folder: pick one to see its settings and files, continue it,
    enlarge it or animate it."""
    with gr.Tab("Runs", id="runs"):
        refresh = gr.Button("Refresh")
        gallery = gr.Gallery(
            label="Runs in the output folder",
            columns=5,
            height=360,
            elem_id="runs-gallery",
            preview=False,
            object_fit="contain",
        )
        listing = gr.Dataframe(interactive=False, label="Runs")
        chosen = gr.Dropdown([], label="Run", allow_custom_value=False)
        with gr.Row():
            steps = gr.Number(value=0, precision=0, label="Steps in all (0: as saved)")
            resume = gr.Button("Continue (resume)", variant="primary")
            stop = gr.Button("Stop (keeps the work)", variant="stop")
            gif = gr.Button("Make GIF")
            mp4 = gr.Button("Make MP4")
        job = gr.State(None)
        progress = gr.Textbox(label="Progress", lines=3, interactive=False)
        with gr.Row():
            image = gr.Image(label="Newest image", type="filepath", interactive=False, height=420)
            with gr.Column():
                files = gr.File(label="Files", file_count="multiple", interactive=False)
                score = gr.Markdown()
        command = gr.Textbox(label="From a terminal", interactive=False, buttons=["copy"])
        settings = gr.Code(language="yaml", interactive=False, label="Settings")

    def on_refresh() -> tuple[Any, ...]:
        entries = studio.runs()
        items = [(str(e.image), e.caption) for e in entries if e.image is not None]
        names = [e.name for e in entries]
        return items, _runs_table(entries), gr.update(choices=names, value=names[0] if names else None)  # fmt: skip

    def on_choose(name: str | None) -> tuple[Any, ...]:
        if not name:
            return None, None, "", "", ""
        try:
            entry = studio.entry(name)
        except NSTError as exc:
            raise _error(exc) from None
        found = studio.finished(entry.folder)
        hint = entry.resume_command if entry.resumable else ""
        return (str(found.image) if found.image else None, [str(p) for p in found.files],
                found.settings, hint, f"{entry.caption} ({entry.kind})")  # fmt: skip

    def on_resume(name: str | None, total: float | None) -> Iterator[tuple[Any, ...]]:
        if not name:
            raise gr.Error("choose a run first", print_exception=False)
        try:
            updates = studio.resume(name, int(total) if total else None)
            for update in updates:
                values = _result_values(update)
                yield values[0], values[1], values[2], values[3], values[4], values[6]
        except NSTError as exc:
            raise _error(exc) from None

    def on_animate(name: str | None, kind: str) -> tuple[Any, ...]:
        if not name:
            raise gr.Error("choose a run first", print_exception=False)
        try:
            made = studio.animate(name, kind)
        except NSTError as exc:
            raise _error(exc) from None
        entry = studio.entry(name)
        return [str(p) for p in studio.finished(entry.folder).files], f"wrote {made}"

    outputs = [gallery, listing, chosen]
    refresh.click(on_refresh, None, outputs, queue=False, api_name="runs")
    page.load(on_refresh, None, outputs, api_visibility="private")
    chosen.change(on_choose, chosen, [image, files, settings, command, progress], api_name="run_details")  # fmt: skip
    resume.click(on_resume, [chosen, steps], [job, progress, image, files, score, command],
                 concurrency_id="run", api_name="resume")  # fmt: skip
    stop.click(_stopper(studio), job, None, concurrency_limit=None, api_visibility="private")
    gif.click(lambda n: on_animate(n, "gif"), chosen, [files, progress], api_name="gif")
    mp4.click(lambda n: on_animate(n, "mp4"), chosen, [files, progress], api_name="mp4")


def _runs_table(entries: Sequence[RunEntry]) -> Any:
    if not entries:
        return None
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "run": e.name,
                "kind": e.kind,
                "status": e.status,
                "progress": e.progress,
                "style weight": (e.settings.get("weights") or {}).get("style"),
                "resolution": e.settings.get("resolution"),
            }
            for e in entries
        ]
    )
