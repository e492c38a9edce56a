"""The Gradio GUI: `onefield gui`. A page over the engine's jobs (see page.py); it owns no training
logic. Binds 127.0.0.1 unless told otherwise and never shares a public link unless asked."""

import os
from pathlib import Path

# Before gradio is imported: no analytics calls and no hub look-ups from a machine that may be offline.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def launch(workspace: str | Path, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           block: bool = True, trainings: int = 1):
    """Serve the page; with `block=False` return (page, gui) at once (tests, scripts)."""
    from .layout import build
    from .page import Gui
    from .workspace import Workspace

    gui = Gui(Workspace(workspace), trainings=trainings)
    page = build(gui)
    page.queue(default_concurrency_limit=1)  # one render / export at a time; others see their position
    page.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                max_file_size=gui.limits.max_file_bytes, blocked_paths=[str(gui.workspace.root)],
                show_error=True, ssr_mode=False, quiet=not block)
    return page, gui
