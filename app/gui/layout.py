"""The page's components and their wiring to the handlers of `page.Gui`. The option forms come from
the config dataclasses (`forms.py`); every registered backend gets one, shown when chosen."""

import gradio as gr

from onefield.scenes.sfm import IMAGE_SUFFIXES, VIDEO_SUFFIXES

from . import forms
from ..view import OUTPUTS
from .page import DEMO, Gui

POLL_SECONDS = 2.0


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
                        backend = gr.Dropdown(list(gui.forms.backends), label="field backend", elem_id="backend",
                                              value="hashgrid" if "hashgrid" in gui.forms.backends else next(iter(gui.forms.backends)))
                        with gr.Row():
                            minutes = gr.Number(2.0, label="minutes", elem_id="minutes")
                            steps = gr.Number(None, label="steps (optional)", precision=0, elem_id="steps")
                            downscale = gr.Number(1.0, label="downscale images by", elem_id="downscale")
                        groups, backend_inputs = {}, []
                        for name, opts in gui.forms.backends.items():
                            with gr.Accordion(f"{name} options", open=False,
                                              visible=name == backend.value) as groups[name]:
                                backend_inputs += forms.build(opts, f"opt-{name}")
                        with gr.Accordion("trainer options", open=False):
                            trainer_inputs = forms.build(gui.forms.trainer, "trainer")
                        with gr.Row():
                            start_btn = gr.Button("Start", variant="primary", elem_id="start")
                            pause_btn = gr.Button("Pause", elem_id="pause")
                            resume_btn = gr.Button("Resume", elem_id="resume")
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                    with gr.Column(scale=2):
                        fit_msg = gr.Markdown("no training yet", elem_id="fit-status")
                        preview = gr.Image(label="held-out view | ground truth", elem_id="fit-preview",
                                           interactive=False)
                        with gr.Row():
                            loss_plot = gr.LinePlot(x="seconds", y="loss", label="loss", height=220, elem_id="loss-plot")
                            psnr_plot = gr.LinePlot(x="seconds", y="dB", color="series", label="PSNR", height=220, elem_id="psnr-plot",
                                                    color_map={"training rays": "#f97316", "held-out views": "#2563eb"})
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

        run_lists = [view_run, export_run, compare_runs, runs_run]
        page.load(gui.start, sid, [sid, dataset, *run_lists, runs_table, banner], api_name="session")
        upload_btn.click(gui.upload, [sid, files, *process_inputs], [upload_msg, files], api_name="upload")
        dataset.change(gui.show_dataset, [sid, dataset], [scene, dataset_msg], api_name="dataset")
        backend.change(lambda b: [gr.update(visible=n == b) for n in groups], backend, list(groups.values()),
                       api_name=False)
        start_btn.click(gui.start_fit, [sid, dataset, backend, minutes, steps, downscale, *trainer_inputs, *backend_inputs],
                        fit_msg, api_name=False)
        for btn, action in ((pause_btn, "pause"), (resume_btn, "resume"), (stop_btn, "stop")):
            btn.click(gui.control, [sid, gr.State(action)], fit_msg, api_name=action)
        timer = gr.Timer(POLL_SECONDS)
        timer.tick(gui.poll, sid, [fit_msg, loss_plot, psnr_plot, preview, process_msg, jobs_table,
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
        refresh_btn.click(gui.refresh, sid, [dataset, *run_lists, runs_table], api_name="refresh")
        resume_run_btn.click(gui.resume, [sid, runs_run, more_minutes], fit_msg, api_name="resume_run")

        # Programmatic doors (gradio_client): the same handlers with options as JSON.
        api_in = [gr.JSON(visible=False) for _ in range(2)]
        job_id = gr.Textbox(visible=False)
        gr.Button(visible=False).click(gui.fit_api, [sid, dataset, backend, *api_in, minutes, steps, downscale], job_id,
                                       api_name="fit")
        gr.Button(visible=False).click(gui.job, [sid, job_id], api_in[0], api_name="job")
    return page
