"""The time window of a drift monitor run, and which of an endpoint's capture files it takes.

SageMaker's data capture writes `<capture uri>yyyy/mm/dd/hh/<file>.jsonl` (inference/capture.py
writes them the same way), so a window takes the files of the hour folders it overlaps, and then
the records whose inferenceTime falls in it. The CollectCaptures step resolves the window and
copies those folders with a `window.json` beside them; the Monitor step reads both back
(captures.py). Standard library only: the collecting job imports no TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

CAPTURE_SUFFIX = ".jsonl"
WINDOW_FILE = "window.json"


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC, and the capture prefix its files were copied from."""

    start: datetime
    end: datetime
    capture_uri: str

    @classmethod
    def resolve(cls, start: str, end: str, minutes: int, capture_uri: str, now: datetime | None = None) -> Window:
        """The window the arguments say (an empty end: now; an empty start: `minutes` before the
        end); ValueError naming the problem if they make none."""
        if minutes < 1:
            raise ValueError(f"bad window minutes {minutes}: must be at least 1")
        finish = _parsed(end, "window end") if end else (now or datetime.now(UTC))
        begin = _parsed(start, "window start") if start else finish - timedelta(minutes=minutes)
        if begin >= finish:
            raise ValueError(f"the window starts at {begin.isoformat()}, not before its end {finish.isoformat()}")
        return cls(begin.astimezone(UTC), finish.astimezone(UTC), capture_uri)

    def hour_folders(self) -> Iterator[str]:
        """`yyyy/mm/dd/hh/`, each hour folder that may hold captures of the window."""
        hour = self.start.replace(minute=0, second=0, microsecond=0)
        while hour < self.end:
            yield f"{hour:%Y/%m/%d/%H}/"
            hour += timedelta(hours=1)

    def write(self, folder: Path) -> None:
        document = {"start": iso(self.start), "end": iso(self.end), "capture_uri": self.capture_uri}
        (folder / WINDOW_FILE).write_text(json.dumps(document, indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Window:
        """The window written into `folder`; ValueError if there is none to read."""
        path = folder / WINDOW_FILE
        try:
            document = json.loads(path.read_text())
            return cls(
                _parsed(document["start"], "window start"),
                _parsed(document["end"], "window end"),
                str(document["capture_uri"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"no readable window in {path} ({type(error).__name__}: {error})") from None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parsed(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad {name} {text!r}: expected ISO 8601, e.g. 2026-12-01T10:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
