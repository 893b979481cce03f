"""The monitor pipeline's CollectCaptures step: an endpoint's captured traffic of a time window,
copied to where the network-isolated Monitor step is given it.

SageMaker Pipelines runs this on the training image, from the unpacked source bundle:

    python3 -m processing.collect_captures --region eu-west-1 \\
        --capture-uri s3://ARTIFACTS/data-capture/cnn/mlops-prod-cnn/AllTraffic/ \\
        --window-start "" --window-end "" --window-minutes 60 --output-dir /opt/ml/processing/captures

It resolves the window (an empty end: now; an empty start: WINDOW_MINUTES before the end), copies
the capture files of the window's hour folders, keeping their `yyyy/mm/dd/hh/<file>.jsonl`
names, and writes `window.json` last. It reads no record (the Monitor does, isolated): it only
lists and copies, which is why it runs with a network; SageMaker uploads the folder as the step's
output and hands it to the Monitor as an input. Standard library and boto3 only. A bad window
exits 2 with one `error: ...` line; an S3 call that fails exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from capture_window import CAPTURE_SUFFIX, Window

log = logging.getLogger("collect_captures")
EXIT_BAD_INPUT = 2  # contract.EXIT_BAD_INPUT, without importing TensorFlow with it


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python3 -m processing.collect_captures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--capture-uri", required=True, help="s3://BUCKET/PREFIX/<endpoint>/<variant>/")
    parser.add_argument("--window-start", default="", help="ISO 8601 UTC; empty: WINDOW_MINUTES before its end")
    parser.add_argument("--window-end", default="", help="ISO 8601 UTC; empty: now")
    parser.add_argument("--window-minutes", type=int, default=60)
    parser.add_argument("--output-dir", type=Path, required=True)
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if not arguments.capture_uri.startswith("s3://"):
            raise ValueError(f"bad capture uri {arguments.capture_uri!r}: expected s3://BUCKET/PREFIX/")
        window = Window.resolve(
            arguments.window_start, arguments.window_end, arguments.window_minutes, arguments.capture_uri
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        copied = collect(boto3.client("s3", region_name=arguments.region), window, arguments.output_dir)
    except (BotoCoreError, ClientError) as error:
        print(f"error: cannot copy the captures under {window.capture_uri}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    log.info("window %s .. %s: %d capture files", window.start, window.end, copied)


def collect(s3: Any, window: Window, output_dir: Path) -> int:
    """Copies the capture files of the window's hour folders into `output_dir`, then writes the
    window there; returns how many files it copied."""
    bucket, _, prefix = window.capture_uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    copied = 0
    for folder in window.hour_folders():
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + folder):
            for item in page.get("Contents", []):
                if not item["Key"].endswith(CAPTURE_SUFFIX):
                    continue
                target = output_dir / item["Key"][len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(target))
                copied += 1
    output_dir.mkdir(parents=True, exist_ok=True)
    # Last: the window's presence means the copy is complete.
    window.write(output_dir)
    return copied


if __name__ == "__main__":
    main()
