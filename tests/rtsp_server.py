"""Real RTSP cameras for the tests and benchmarks: GStreamer's rtsp-server (Debian
`gir1.2-gst-rtsp-server-1.0`) on 127.0.0.1, serving a live H.264 test pattern, or H.264 MP4 files as they are
(packets copied, no re-encoding; each client plays its file from the start at its own pace, and the session
ends with the file, as a camera that drops). Run with the system Python, which has `gi`:

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /cam
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --file cam0=a.mp4 --file cam1=b.mp4

It prints `ready rtsp://127.0.0.1:PORT/PATH` (one line per mount) once listening and serves until killed.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--file", action="append", default=[], metavar="NAME=PATH",
                        help="serve an H.264 MP4 at /NAME, packets copied (repeatable; replaces the test pattern)")
    parser.add_argument("--audio", action="store_true",
                        help="with --file: the files' AAC audio too (each must have it)")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts: list[tuple[str, str, bool]] = []
    for item in args.file:
        name, _, path = item.partition("=")
        if not name or not path:
            parser.error(f"--file {item}: expected NAME=PATH")
        location = path.replace("\\", "\\\\").replace('"', '\\"')
        audio = " d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97" if args.audio else ""
        mounts.append((f"/{name}", f'( filesrc location="{location}" ! qtdemux name=d d.video_0 ! queue ! h264parse '
                       f"! rtph264pay name=pay0 pt=96 config-interval=1{audio} )", False))
    if not mounts:
        mounts.append((args.path,
                       f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={args.width},"
                       f"height={args.height},framerate={args.fps}/1 ! x264enc tune=zerolatency "
                       f"speed-preset=ultrafast key-int-max={args.fps} ! rtph264pay name=pay0 pt=96 "
                       "config-interval=1 )", True))
    for path, launch, shared in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(shared)  # a file: each client its own playback from the start
        server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        sys.exit(1)
    for path, _, _ in mounts:
        print(f"ready rtsp://127.0.0.1:{args.port}{path}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
