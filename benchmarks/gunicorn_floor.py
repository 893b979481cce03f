"""What gunicorn alone costs on this machine: endpoint_latency.py's clients against a no-work app.

    .venv/bin/python benchmarks/gunicorn_floor.py [--duration 5] [--rounds 2]

gunicorn with the local endpoint's settings (`inference.endpoint_server`: threaded workers,
`inference.local_endpoint.WORKERS` x `THREADS`, keep-alive, each worker on its own cores) serves
a WSGI app that reads the body and answers a constant JSON; endpoint_latency.py's own warm-up and
four runs (keep-alive and a new connection per request, 1 and 16 clients, the same PNG body).
Whatever these runs miss of endpoint_latency.py's requirements, no handler or model can meet on
this machine with this server: the floor under its figures. Figures: docs/benchmarks.md ("The
local endpoint's latency").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from endpoint_latency import digit_png, measure_endpoint, print_runs  # noqa: E402

from inference.endpoint_server import KEEP_ALIVE_SECONDS, keep_to_its_cores, share_out_cores  # noqa: E402
from inference.local_endpoint import LISTEN_BACKLOG, THREADS, WORKERS  # noqa: E402

ANSWER = json.dumps({"predictions": [{"label": "8"}]}).encode()


def no_work_app(environ: dict, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


def serve(listen_fd: int) -> None:
    from gunicorn.app.base import BaseApplication

    class NoWorkServer(BaseApplication):
        def load_config(self) -> None:
            for name, value in {
                "bind": [f"fd://{listen_fd}"],
                "worker_class": "gthread",
                "workers": WORKERS,
                "threads": THREADS,
                "keepalive": KEEP_ALIVE_SECONDS,
                "loglevel": "warning",
                "pre_fork": share_out_cores,
                "post_fork": keep_to_its_cores,
            }.items():
                self.cfg.set(name, value)

        def load(self):
            return no_work_app

    NoWorkServer().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each 16-client run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", 0), backlog=LISTEN_BACKLOG)
    os.set_inheritable(listener.fileno(), True)
    server = multiprocessing.get_context("fork").Process(target=serve, args=(listener.fileno(),))
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    body, _ = digit_png()
    try:
        for round_number in range(args.rounds):
            load_before = os.getloadavg()[0]
            runs, _ = measure_endpoint(url, body, args.duration)  # the app answers every path alike
            print_runs(
                f"round {round_number + 1}: gunicorn gthread {WORKERS} x {THREADS}, no-work app "
                f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)",
                runs,
            )
    finally:
        server.terminate()
        server.join(30)


if __name__ == "__main__":
    main()
