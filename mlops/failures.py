"""What becomes of an exception that escapes an `mlops` command, other than the expected ones
(`errors.UsageError`, `errors.RunFailed`, which carry their own message):

- a failure of the AWS environment (no credentials, an expired token, no network) is one line;
- anything else is a bug: its traceback goes to a log file and the terminal gets one line naming
  the command (and the phase, see `errors.PhaseCrashed`) and that file.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

import typer
from botocore.exceptions import (
    ClientError,
    ConfigNotFound,
    ConfigParseError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    InvalidConfigError,
    NoAuthTokenError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)

from mlops.errors import PhaseCrashed, describe

DEBUG_ENV = "MLOPS_DEBUG"
_LOG_DIR = "mlops.failure_log_dir"  # key in the click context's `meta`, shared by nested commands

_CREDENTIAL_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
    SSOError,
    NoAuthTokenError,
    ProfileNotFound,
    ConfigNotFound,
    ConfigParseError,
    InvalidConfigError,
    NoRegionError,
)
_NETWORK_ERRORS = (ConnectionError, HTTPClientError)
# Error codes by which AWS refuses the caller rather than the request.
_CREDENTIAL_CODES = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "RequestExpired",
    "InvalidToken",
    "MissingAuthenticationToken",
    "AuthFailure",
}
_REFUSAL_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ServiceUnavailable",
}
_CREDENTIAL_HINT = "check this shell's AWS profile, credentials and region (aws sts get-caller-identity)"


def environment_failure(error: BaseException) -> str | None:
    """One line for an error of the AWS environment rather than of mlops, else None."""
    if isinstance(error, _CREDENTIAL_ERRORS):
        return f"AWS credentials or configuration: {error}; {_CREDENTIAL_HINT}"
    if isinstance(error, _NETWORK_ERRORS):
        return f"cannot reach AWS: {error}"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _CREDENTIAL_CODES:
            return f"AWS refused this shell's credentials: {error}; {_CREDENTIAL_HINT}"
        if code in _REFUSAL_CODES:
            return f"AWS refused the request: {error}"
    return None


def keep_logs_in(context: typer.Context, folder: Path) -> None:
    """Failure logs of the running command go to `folder` (say, the report folder it writes)."""
    context.meta[_LOG_DIR] = folder


def log_folders(context: typer.Context) -> list[Path]:
    """Where a failure log may go, best first: the command's own folder if it named one, the
    user's state folder, the system's temporary folder."""
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    preferred = context.meta.get(_LOG_DIR)
    return [*([preferred] if preferred else []), Path(state_home) / "mlops" / "logs", Path(tempfile.gettempdir())]


def write_log(error: BaseException, command: str, folders: list[Path]) -> Path | None:
    """The traceback, with what was run, in a new file of the first folder that can be written
    (None if none can)."""
    now = datetime.now()
    text = "".join(
        [
            f"{command} failed at {now.isoformat(timespec='seconds')}\n",
            f"command line: {' '.join(sys.argv)}\n",
            f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}\n\n",
            *traceback.format_exception(error),
        ]
    )
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return _new_file(folder.resolve(), f"mlops-error-{now:%Y%m%d-%H%M%S}", text)
        except OSError:
            continue
    return None


def one_line(error: BaseException, command: str, log: Path) -> str:
    what = str(error) if isinstance(error, PhaseCrashed) else f"unexpected error: {describe(error)}"
    return f"{command}: {what} (traceback in {log})"


def _new_file(folder: Path, stem: str, text: str) -> Path:
    for attempt in range(1, 100):
        path = folder / (f"{stem}.log" if attempt == 1 else f"{stem}-{attempt}.log")
        try:
            with path.open("x") as log:
                log.write(text)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder / stem}*.log: too many failure logs this second")
