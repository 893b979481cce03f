"""Network isolation, as SageMaker gives it to a job whose request asks for it, for the local
executor's jobs.

In AWS a job with `EnableNetworkIsolation` (CreateTrainingJob) or
`NetworkConfig.EnableNetworkIsolation` (CreateProcessingJob) runs in a container with no route out:
no S3, no AWS API, no internet, and no credentials (its role is used by SageMaker alone, to move
the job's channels, inputs and outputs). Locally the executor moves the data as the job's role,
outside the job, and runs the job itself in one of two ways, whichever this machine allows:

    namespace    a network namespace of its own (`unshare --net`, from util-linux), holding only
                 a loopback interface, which is brought up: no route to the local AWS (moto on
                 this machine's 127.0.0.1) or anywhere else, as in AWS. Needs root, or
                 unprivileged user namespaces (then `--map-root-user`).
    environment  where no namespace can be made (a container without CAP_SYS_ADMIN, user
                 namespaces turned off): no AWS credentials, no endpoint of the local AWS, no
                 shared config or credentials file, no instance metadata, and an HTTP(S) proxy that
                 refuses every connection, so that clients honouring the proxy variables
                 (botocore, urllib, requests, pip, Keras downloads) fail as they would in AWS.
                 Looser than AWS: a raw socket still reaches this machine and the internet.

Both remove every AWS_* variable the job would otherwise inherit, and give the job an empty home
folder of its own: a container starts with none of this machine's caches (Keras' downloaded
weights in ~/.keras, say) or AWS files (~/.aws).

    confinement = detect()                  # probed once per process
    argv, env = confinement.confine(["/bin/bash", "-c", command], env, home=job_dir / "home")

Run as a script, this file is the namespace's launcher: `isolation.py PROGRAM ARGS...` brings the
loopback interface up, then becomes PROGRAM (standard library only: it runs before anything else).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# No listener: port 9 (discard) on the loopback of wherever the job runs refuses the connection.
REFUSING_PROXY = "http://127.0.0.1:9"
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_PROBE_SECONDS = 30


@dataclass(frozen=True)
class Confinement:
    kind: Literal["namespace", "environment"]
    prefix: tuple[str, ...]
    """What runs before the job's own command (the namespace and its launcher)."""
    reason: str = ""
    """Why there is no namespace, when there is none."""

    def describe(self) -> str:
        if self.kind == "namespace":
            return "no network (a network namespace of its own)"
        return f"no AWS credentials or endpoint, proxies refused (no network namespace: {self.reason})"

    def confine(self, argv: Sequence[str], env: Mapping[str, str], *, home: Path) -> tuple[list[str], dict[str, str]]:
        """The command line and environment of `argv`, run as an isolated job with `env` less AWS
        and `home` (created empty if missing) as its home folder."""
        home.mkdir(parents=True, exist_ok=True)
        confined = {name: value for name, value in env.items() if not name.startswith("AWS_")}
        # This machine's own AWS files and caches: an isolated container has none.
        confined.update(HOME=str(home), AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        if self.kind == "environment":
            # A cloud machine's metadata service would hand out its own credentials.
            confined["AWS_EC2_METADATA_DISABLED"] = "true"
            for name in ("NO_PROXY", "no_proxy"):
                confined.pop(name, None)
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                confined[name] = REFUSING_PROXY
        return [*self.prefix, *argv], confined


@functools.cache
def detect() -> Confinement:
    """A network namespace if one can be made and its loopback brought up here; else the environment."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return Confinement("environment", (), "no `unshare` command (util-linux)")
    command: list[str] = [unshare, "--net"]
    if os.geteuid() != 0:
        command.append("--map-root-user")
    prefix = (*command, sys.executable, os.path.abspath(__file__))
    try:
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", ""], capture_output=True, text=True, timeout=_PROBE_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Confinement("environment", (), f"{' '.join(command)} failed: {error}")
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        return Confinement("environment", (), f"{' '.join(command)} failed: {last}")
    return Confinement("namespace", prefix)


def is_isolated(value: Any) -> bool:
    """A request's EnableNetworkIsolation: a boolean, or the text a pipeline parameter resolves to."""
    return value is True or str(value).lower() == "true"


def bring_loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(probe, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))


if __name__ == "__main__":
    bring_loopback_up()
    os.execvp(sys.argv[1], sys.argv[1:])
