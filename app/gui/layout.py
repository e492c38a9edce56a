"""The page's components and their wiring to the handlers of `page.Gui`. The option forms come from
the config dataclasses (`forms.py`); every registered backend gets one, shown when chosen. Fit and
Convert share their parts: a backend picker with its forms, the buttons, and the live panel."""

import gradio as gr

from onefield.scenes.sfm import IMAGE_SUFFIXES, VIDEO_SUFFIXES

from . import forms
from ..view import OUTPUTS
from .page import DEMO, LIVE, Gui

POLL_SECONDS = 2.0


def backend_choice(gui: Gui, elem_id: str) -> gr.Dropdown:
    """A dropdown of every registered backend."""
    backends = gui.forms.backends
    return gr.Dropdown(list(backends), label="field backend", elem_id=elem_id,
                       value="hashgrid" if "hashgrid" in backends else next(iter(backends)))


def backend_forms(gui: Gui, backend: gr.Dropdown, prefix: str) -> list[gr.components.Component]:
    """Every backend's options form (in `gui.forms.backends` order), only the one chosen in `backend` shown."""
    backends = gui.forms.backends
    groups, inputs = [], []
    for name, opts in backends.items():
        with gr.Accordion(f"{name} options", open=False, visible=name == backend.value,
                          elem_id=f"{prefix}-{name}") as group:
            inputs += forms.build(opts, f"{prefix}-{name}")
        groups.append(group)
    backend.change(lambda b: [gr.update(visible=n == b) for n in backends], backend, groups, api_name=False)
    return inputs


def job_buttons(prefix: str) -> tuple[gr.Button, ...]:
    """Start, Pause, Resume, Stop."""
    with gr.Row():
        return (gr.Button("Start", variant="primary", elem_id=f"{prefix}start"),
                gr.Button("Pause", elem_id=f"{prefix}pause"), gr.Button("Resume", elem_id=f"{prefix}resume"),
                gr.Button("Stop", variant="stop", elem_id=f"{prefix}stop"))


def live_panel(kind: str) -> list[gr.components.Component]:
    """A training's status, held-out preview and loss / PSNR curves, as `Gui.live` fills them."""
    status = gr.Markdown(f"no {LIVE[kind]} yet", elem_id=f"{kind}-status")
    preview = gr.Image(label="held-out view | ground truth", elem_id=f"{kind}-preview", interactive=False)
    with gr.Row():
        loss = gr.LinePlot(x="seconds", y="loss", label="loss", height=220, elem_id=f"{kind}-loss-plot")
        psnr = gr.LinePlot(x="seconds", y="dB", color="series", label="PSNR", height=220, elem_id=f"{kind}-psnr-plot",
                           color_map={"training rays": "#f97316", "held-out views": "#2563eb"})
    return [status, loss, psnr, preview]


def build(gui: Gui) -> gr.Blocks:
    # gradio's own copies of what the page showed are dropped after an hour
    with gr.Blocks(title="onefield", delete_cache=(3600, 3600)) as page:
        sid = gr.BrowserState(None, storage_key="onefield-session", secret=gui.workspace.secret)
        gr.Markdown("# onefield")
        # Lists of datasets and runs differ per session, so gradio cannot check a value against them:
        # every handler resolves the value inside the session's folders instead (workspace.py).
        listed = {"allow_custom_value": True}
        banner = gr.Markdown(elem_id="session")
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                with gr.Row():
                    with gr.Column():
                        files = gr.File(label="photos (several files or one .zip) or a video", file_count="multiple",
                                        file_types=[*IMAGE_SUFFIXES, *VIDEO_SUFFIXES, ".zip"], type="filepath", elem_id="upload")
                        with gr.Accordion("structure-from-motion options", open=False):
                            process_inputs = forms.build(gui.forms.process, "process")
                        upload_btn = gr.Button("Upload and process", variant="primary", elem_id="upload-btn")
                        upload_msg = gr.Markdown(elem_id="upload-msg")
                        process_msg = gr.Markdown(elem_id="process-msg")
                    with gr.Column():
                        dataset = gr.Dropdown([DEMO], value=None, label="dataset", elem_id="dataset", **listed,
                                              info="the built-in demo, this session's datasets, or the workspace's data/")
                        dataset_msg = gr.Markdown()
                        scene = gr.Plot(label="cameras and sparse points", elem_id="scene-plot")
            with gr.Tab("Fit", id="fit"):
                with gr.Row():
                    with gr.Column(scale=1):
                        backend = backend_choice(gui, "backend")
                        with gr.Row():
                            minutes = gr.Number(2.0, label="minutes", elem_id="minutes")
                            steps = gr.Number(None, label="steps (optional)", precision=0, elem_id="steps")
                            downscale = gr.Number(1.0, label="downscale images by", elem_id="downscale")
                        backend_inputs = backend_forms(gui, backend, "opt")
                        with gr.Accordion("trainer options", open=False):
                            trainer_inputs = forms.build(gui.forms.trainer, "trainer")
                        start_btn, *fit_buttons = job_buttons("")
                    with gr.Column(scale=2):
                        fit_panel = live_panel("fit")
            with gr.Tab("Convert", id="convert"):
                with gr.Row():
                    with gr.Column(scale=1):
                        convert_run = gr.Dropdown([], label="teacher run", elem_id="convert-run", **listed,
                                                  info="the run to convert: this session's or the workspace's runs/")
                        convert_backend = backend_choice(gui, "convert-backend")
                        with gr.Row():
                            convert_minutes = gr.Number(2.0, label="minutes", elem_id="convert-minutes")
                            convert_steps = gr.Number(None, label="steps (optional)", precision=0, elem_id="convert-steps")
                        convert_inputs = backend_forms(gui, convert_backend, "convert-opt")
                        with gr.Accordion("distillation options", open=False):
                            distill_inputs = forms.build(gui.forms.distill, "distill")
                        convert_btn, *convert_buttons = job_buttons("convert-")
                    with gr.Column(scale=2):
                        convert_panel = live_panel("distill")
            with gr.Tab("View", id="view"):
                with gr.Row():
                    with gr.Column(scale=1):
                        view_run = gr.Dropdown([], label="run", elem_id="view-run", **listed)
                        azimuth = gr.Slider(-180, 180, 0, step=1, label="azimuth", elem_id="azimuth")
                        elevation = gr.Slider(-89, 89, 20, step=1, label="elevation", elem_id="elevation")
                        distance = gr.Slider(0.1, 20, 4, step=0.01, label="distance", elem_id="distance")
                        fov = gr.Slider(10, 120, 40, step=1, label="field of view", elem_id="fov")
                        output = gr.Radio(list(OUTPUTS), value="rgb", label="output", elem_id="output")
                        size = gr.Slider(32, 800, 256, step=16, label="resolution (longest side)", elem_id="size")
                        turntable_btn = gr.Button("Turntable video", elem_id="turntable")
                    with gr.Column(scale=2):
                        view_image = gr.Image(label="view", interactive=False, elem_id="view-image", height=480)
                        video = gr.Video(label="turntable", elem_id="turntable-video")
            with gr.Tab("Export", id="export"):
                with gr.Row():
                    with gr.Column(scale=1):
                        export_run = gr.Dropdown([], label="run", elem_id="export-run", **listed)
                        mesh_inputs = forms.build(gui.forms.mesh, "mesh")
                        with gr.Row():
                            mesh_btn = gr.Button("Export mesh", variant="primary", elem_id="export-mesh")
                            cloud_btn = gr.Button("Export point cloud", elem_id="export-cloud")
                            splats_btn = gr.Button("Export splats", elem_id="export-splats")
                    with gr.Column(scale=2):
                        export_msg = gr.Markdown(elem_id="export-msg")
                        model = gr.Model3D(label="mesh", elem_id="mesh-model", height=420)
                        downloads = gr.File(label="downloads", file_count="multiple", elem_id="downloads")
                        cloud = gr.File(label="point cloud", elem_id="cloud")
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    batch_dir = gr.Dropdown([], label="batch output folder (`onefield batch --out WORKSPACE/runs/NAME`)",
                                            elem_id="batch-dir", **listed)
                    batch_btn = gr.Button("Open batch", elem_id="batch-btn")
                batch_table = gr.Dataframe(label="the batch's cells", elem_id="batch-table")
                with gr.Accordion("report", open=True):
                    batch_report = gr.HTML(elem_id="batch-report")
                    batch_file = gr.File(label="report.html", elem_id="batch-file")
                compare_runs = gr.Dropdown([], multiselect=True, label="runs", elem_id="compare-runs", **listed)
                with gr.Row():
                    compare_output = gr.Radio(list(OUTPUTS), value="rgb", label="output")
                    compare_size = gr.Slider(64, 512, 192, step=16, label="resolution")
                compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
                compare_table = gr.Dataframe(label="held-out quality, size and training time", elem_id="compare-table")
                compare_image = gr.Image(label="the same camera, each run", interactive=False, elem_id="compare-image")
            with gr.Tab("Runs", id="runs"):
                with gr.Row():
                    runs_run = gr.Dropdown([], label="run", elem_id="runs-run", **listed)
                    more_minutes = gr.Number(1.0, label="minutes more (a finished run)", elem_id="more-minutes")
                    resume_run_btn = gr.Button("Resume run", elem_id="resume-run")
                    refresh_btn = gr.Button("Refresh lists", elem_id="refresh")
                runs_table = gr.Dataframe(label="runs in the workspace", elem_id="runs-table")
                jobs_table = gr.Dataframe(label="this session's jobs", elem_id="jobs-table")

        run_lists = [view_run, export_run, convert_run, compare_runs, runs_run]
        page.load(gui.start, sid, [sid, dataset, *run_lists, runs_table, banner, batch_dir], api_name="session")
        upload_btn.click(gui.upload, [sid, files, *process_inputs], [upload_msg, files], api_name="upload")
        dataset.change(gui.show_dataset, [sid, dataset], [scene, dataset_msg], api_name="dataset")
        fit_msg = fit_panel[0]
        start_btn.click(gui.start_fit, [sid, dataset, backend, minutes, steps, downscale, *trainer_inputs, *backend_inputs],
                        fit_msg, api_name=False)
        convert_btn.click(gui.start_distill, [sid, convert_run, convert_backend, convert_minutes, convert_steps,
                                              *distill_inputs, *convert_inputs], convert_panel[0], api_name=False)
        panels = {"fit": (fit_buttons, fit_panel), "distill": (convert_buttons, convert_panel)}  # the kinds of LIVE
        for kind, (buttons, panel) in panels.items():
            for btn, action in zip(buttons, ("pause", "resume", "stop")):
                btn.click(gui.control, [sid, gr.State(action), gr.State(kind)], panel[0],
                          api_name=action if kind == "fit" else f"{action}_{kind}")
        timer = gr.Timer(POLL_SECONDS)
        timer.tick(gui.poll, sid, [*(c for kind in LIVE for c in panels[kind][1]), process_msg, jobs_table,
                                   dataset, *run_lists, runs_table],
                   api_name=False, show_progress="hidden")

        # Every render of the View shares one pool of two workers (two cores), whichever control asked.
        renders = {"concurrency_id": "render", "concurrency_limit": 2}
        orbit = [sid, view_run, azimuth, elevation, distance, fov, output, size]
        view_run.change(gui.view_defaults, [sid, view_run], [azimuth, elevation, distance, fov, view_image],
                        api_name=False, **renders)
        for slider in (azimuth, elevation, distance, fov):  # coarse while it moves, full once it rests
            slider.change(gui.preview, orbit, view_image, trigger_mode="always_last", show_progress="hidden",
                          api_name=False, **renders).then(gui.settle, orbit, view_image, show_progress="hidden",
                                                         api_name=False, **renders)
        for control in (output, size):
            control.change(gui.render, orbit, view_image, trigger_mode="always_last", api_name=False, **renders)
        gr.Button(visible=False).click(gui.render, orbit, view_image, api_name="render", **renders)
        turntable_btn.click(gui.turntable, [sid, view_run, elevation, distance, fov, output, size], video,
                            api_name="turntable", **renders)

        mesh_btn.click(gui.export_mesh, [sid, export_run, *mesh_inputs], [model, downloads, export_msg],
                       api_name="export_mesh")
        splats_btn.click(gui.export_splats, [sid, export_run], [model, downloads, export_msg], api_name="export_splats")
        cloud_btn.click(gui.export_pointcloud, [sid, export_run, *mesh_inputs], [cloud, export_msg],
                        api_name="export_pointcloud")
        compare_btn.click(gui.compare, [sid, compare_runs, compare_output, compare_size], [compare_table, compare_image],
                          api_name="compare")
        refresh_btn.click(gui.refresh, sid, [dataset, *run_lists, runs_table, batch_dir], api_name="refresh")
        batch_btn.click(gui.open_batch, [sid, batch_dir], [batch_table, batch_report, batch_file, compare_runs],
                        api_name="open_batch")
        resume_run_btn.click(gui.resume, [sid, runs_run, more_minutes], fit_msg, api_name="resume_run")

        # Programmatic doors (gradio_client): the same handlers with options as JSON.
        api_in = [gr.JSON(visible=False) for _ in range(2)]
        job_id = gr.Textbox(visible=False)
        gr.Button(visible=False).click(gui.fit_api, [sid, dataset, backend, *api_in, minutes, steps, downscale], job_id,
                                       api_name="fit")
        gr.Button(visible=False).click(gui.distill_api, [sid, convert_run, convert_backend, *api_in, convert_minutes,
                                                         convert_steps], job_id, api_name="distill")
        gr.Button(visible=False).click(gui.job, [sid, job_id], api_in[0], api_name="job")
    return page
