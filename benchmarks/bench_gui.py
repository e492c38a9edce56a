"""The GUI's start-up and its orbit view as a user meets them, through the served page.

Targets (issue 14): `onefield gui` serves its page within 30 s; a 128x128 orbit frame of a fitted
hashgrid run in at most 0.3 s. Measured here: seconds from starting `onefield gui` (a new process,
imports included) to the first HTTP 200 of its page; then, through gradio_client against that
server, a fit of the demo scene (`/fit`, hashgrid with the demo's table size) and the round trip
of `/render` at 128 px (rgb) while the azimuth turns, median of 20, beside the same frames rendered
in-process by `RunView.render` (the difference is gradio's own cost).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from common import finish

TARGET_START_S, TARGET_FRAME_S = 30.0, 0.3


def wait_served(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7890)
    parser.add_argument("--minutes", type=float, default=1.0, help="training budget of the demo fit")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}/"
    workspace = Path(tempfile.mkdtemp(prefix="onefield-bench-gui-"))
    start = time.perf_counter()
    server = subprocess.Popen([Path(sys.executable).parent / "onefield", "gui", "--workspace", str(workspace),
                               "--port", str(args.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_served(url)
        start_s = time.perf_counter() - start
        print(f"onefield gui served its page after {start_s:.1f} s (target {TARGET_START_S:.0f} s)", flush=True)

        from gradio_client import Client

        from onefield.app.demo import DEMO_FIELD
        from onefield.app.gui.page import DEMO
        from onefield.app.view import Orbit, open_view

        client = Client(url, verbose=False)
        sid = client.predict(None, api_name="/session")[0]
        job = client.predict(sid, DEMO, "hashgrid", asdict(DEMO_FIELD), {}, args.minutes, None, 1.0, api_name="/fit")
        while not (state := client.predict(sid, job, api_name="/job"))["finished"]:
            time.sleep(1)
        run = state["result"]
        view = open_view(Path(run))
        orbit = view.default_orbit()
        served, local = [], []
        for k in range(21):
            azimuth = -180.0 + 17.0 * k
            t = time.perf_counter()
            client.predict(sid, run, azimuth, orbit.elevation, orbit.distance, orbit.fov, "rgb", 128, api_name="/render")
            served.append(time.perf_counter() - t)
            t = time.perf_counter()
            view.render(Orbit(azimuth, orbit.elevation, orbit.distance, orbit.fov), 128)
            local.append(time.perf_counter() - t)
        served_s, local_s = statistics.median(served[1:]), statistics.median(local[1:])
        verdict = "pass" if served_s <= TARGET_FRAME_S else "FAIL"
        print(f"128 px orbit frame: {served_s:.3f} s through the page, {local_s:.3f} s in-process "
              f"(median of 20) -> {verdict} (target {TARGET_FRAME_S} s); {state['message']}")
        finish("gui", {"start_s": round(start_s, 2), "frame_128_served_s": round(served_s, 4),
                       "frame_128_local_s": round(local_s, 4), "fit": state["message"],
                       "pass": start_s <= TARGET_START_S and served_s <= TARGET_FRAME_S})
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
