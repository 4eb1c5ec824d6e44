#!/usr/bin/env python3
"""Open a .vpy in the real vs-preview on an X display, show frame 0, seek, and report what was shown.

For each frame of --frames, in order, it seeks as the frame box does (``MainWindow.switch_frame``)
and waits until the X server's pixels of the video area equal the image vs-preview rendered for
that frame. It prints JSON: per seek the milliseconds until the frame is on screen, and the RGB
conversion vs-preview applied (so a caller can convert ``get_frame`` the same way); with --out DIR
it saves each frame as shown on the screen (the first one too), as DIR/shown_N.npy (height × width
× RGB, uint8).

--xvfb starts a private Xvfb for the run (else DISPLAY must name one). vs-preview's settings and
storage go to a temporary folder (HOME is redirected), so a user's settings change nothing.
Needs: pip install vspreview==0.20.1 'vsjetpack<2'; Debian's xvfb and Qt's xcb libraries (.ci/run).
  scripts/preview_seek.py job.vpy --frames 60 61 60 --xvfb
"""

from __future__ import annotations

import argparse
import atexit
import faulthandler
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def start_xvfb() -> None:
    """A private Xvfb on a free display number, stopped when this process ends."""
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "3000x2000x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        display = f.readline().strip()
    if not display:
        raise SystemExit("Xvfb did not start")
    atexit.register(lambda: (proc.terminate(), proc.wait(10)))
    os.environ["DISPLAY"] = f":{display}"


def isolate_settings() -> None:
    """vs-preview, Qt and matplotlib write under HOME: point it at a folder removed at exit."""
    tmp = Path(tempfile.mkdtemp(prefix="edvr_vs-preview-"))
    atexit.register(shutil.rmtree, tmp, True)
    for name in ("home", "runtime"):
        (tmp / name).mkdir(mode=0o700)
    os.environ.update(HOME=str(tmp / "home"), XDG_RUNTIME_DIR=str(tmp / "runtime"),
                      MPLCONFIGDIR=str(tmp / "home" / ".mpl"), QT_QPA_PLATFORM="xcb")


def to_rgb(image) -> np.ndarray:
    """A QImage as height × width × RGB uint8."""
    from PyQt6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    bits = image.constBits()
    bits.setsize(stride * h)
    return np.frombuffer(bits, np.uint8).reshape(h, stride)[:, :w * 3].reshape(h, w, 3).copy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("script", type=Path)
    ap.add_argument("--frames", type=int, nargs="+", required=True, help="frames to seek to, in order")
    ap.add_argument("--out", type=Path, help="save each frame as shown on screen here (shown_N.npy)")
    ap.add_argument("--xvfb", action="store_true", help="start a private Xvfb (else DISPLAY must be set)")
    ap.add_argument("--timeout", type=float, default=600, help="give up (exit 1) after this many seconds")
    args = ap.parse_args()
    faulthandler.dump_traceback_later(args.timeout, exit=True)  # nothing hangs, even inside Qt
    isolate_settings()
    if args.xvfb:
        start_xvfb()
    if not os.environ.get("DISPLAY"):
        raise SystemExit("no X display: set DISPLAY or pass --xvfb")

    t0 = time.perf_counter()
    importlib.import_module("vspreview.qt_patch")  # vs-preview's own entry point imports it first
    from jetpytools import SPath
    from PyQt6.QtWidgets import QApplication
    from vspreview.core.types.units import Frame
    from vspreview.core.vsenv import _dispose, set_vsengine_loop
    from vspreview.main import MainWindow
    from vstools import video_heuristics

    app = QApplication([sys.argv[0]])
    set_vsengine_loop()
    config = Path(os.environ["HOME"]) / "config"
    config.mkdir()
    win = MainWindow(SPath(config), True, False, False)  # config dir, no_exit, reload, force_storage
    win.load_script(SPath(args.script.resolve()), [], False, None, None, None)
    if win.script_exec_failed or not win.outputs:
        raise SystemExit(f"vs-preview could not load {args.script}")
    out, view = win.current_output, win.graphics_view
    # No window manager on Xvfb: make room for the whole frame at 100 % (and the toolbars below it).
    win.setGeometry(0, 0, max(1200, out.width + 500), max(900, out.height + 400))
    result: dict[str, object] = {"platform": app.platformName(), "load_s": round(time.perf_counter() - t0, 3),
                                 "size": [out.width, out.height]}

    settings = win.toolbars.playback.settings
    with win.env.environment.use():
        guess = video_heuristics(out.source.clip, True)
    result["conversion"] = {**{k: int(guess[k]) for k in ("matrix_in", "transfer_in", "primaries_in", "range_in",
                                                            "chromaloc_in")},
                            "transfer": 1, "primaries": int(win.settings.output_primaries_zimg),
                            "filter_param_a": settings.kernel["b"], "filter_param_b": settings.kernel["c"],
                            "dither_type": settings.dither_type.lower()}

    def on_screen() -> np.ndarray:
        item = out.graphics_scene_item._graphics_item
        corner = view.viewport().mapTo(win, view.mapFromScene(item.mapToScene(item.boundingRect().topLeft())))
        grab = app.primaryScreen().grabWindow(int(win.winId()), corner.x(), corner.y(), out.width, out.height)
        return to_rgb(grab.toImage())

    def wait_shown(limit_s: float = 60) -> None:
        """Until the screen shows the image vs-preview rendered for the current frame."""
        rendered = to_rgb(out.graphics_scene_item.pixmap().toImage())
        deadline = time.perf_counter() + limit_s
        while not np.array_equal(on_screen(), rendered):
            if time.perf_counter() > deadline:
                shown, vp = on_screen(), view.viewport().size()
                differ = int((shown != rendered).any(axis=-1).sum()) if shown.shape == rendered.shape else "all"
                raise SystemExit(f"the rendered frame did not reach the screen within {limit_s:.0f} s: {differ} "
                                 f"pixels of {rendered.shape[1]}x{rendered.shape[0]} differ (window "
                                 f"{win.width()}x{win.height()}, video area {vp.width()}x{vp.height()})")
            app.processEvents()
            time.sleep(0.002)

    def save(n: int) -> None:
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            np.save(args.out / f"shown_{n}.npy", on_screen())

    wait_shown()
    result["first_frame_s"] = round(time.perf_counter() - t0, 3)
    save(int(out.last_showed_frame))
    seeks = []
    for n in args.frames:
        t = time.perf_counter()
        win.switch_frame(Frame(n))
        computed = time.perf_counter() - t
        wait_shown()
        seeks.append({"frame": n, "shown_frame": int(out.last_showed_frame),
                      "render_ms": round(computed * 1e3, 1), "on_screen_ms": round((time.perf_counter() - t) * 1e3, 1)})
        save(n)
    result["seeks"] = seeks
    win.autosave_timer.stop()
    win.hide()
    app.processEvents()
    _dispose()
    print(json.dumps(result, indent=1))
    faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    sys.exit(main())
