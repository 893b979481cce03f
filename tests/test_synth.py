"""`cdk synth` through the real CLI: offline, credential-free, deterministic, lint-clean.

The CLI runs inside an empty network namespace (`unshare -rn`: not even loopback is up), so
any network call by the CLI, the app or jsii fails the synth rather than going unnoticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from synth_support import REPO_ROOT, synthesized

# slow: synthesizes the whole app with the CDK CLI.
pytestmark = pytest.mark.slow

CDK_BIN = REPO_ROOT / "node_modules" / ".bin" / "cdk"


@dataclass(frozen=True)
class CliSynth:
    outdir: Path
    returncode: int
    stderr: str


def _offline_env(home: Path) -> dict[str, str]:
    """No AWS_* variable, and a HOME without ~/.aws: no credentials anywhere."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]]),
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        CDK_DISABLE_CLI_TELEMETRY="true",
        CDK_DISABLE_VERSION_CHECK="true",
        # `python3 app.py` logs every module it imports to stderr, which the CLI passes on.
        PYTHONPROFILEIMPORTTIME="1",
    )
    return env


def _start_offline_synth(outdir: Path, home: Path) -> subprocess.Popen[str]:
    command = ["unshare", "-rn", str(CDK_BIN), "synth", "--quiet", "--output", str(outdir)]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=_offline_env(home), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@pytest.fixture(scope="module")
def cli_synths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CliSynth]]:
    """Two CLI synths of the default stage at once (one per core)."""
    root = tmp_path_factory.mktemp("cli-synth")
    home = root / "home"
    home.mkdir()
    processes = {name: _start_offline_synth(root / name, home) for name in ("first", "second")}
    results = {}
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        results[name] = CliSynth(outdir=root / name, returncode=process.returncode, stderr=stderr)
    yield results


def _templates(outdir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(outdir.glob("*.template.json"))}


def test_synth_needs_no_credentials_and_no_network(cli_synths: dict[str, CliSynth]) -> None:
    for name in ("first", "second"):
        assert cli_synths[name].returncode == 0, cli_synths[name].stderr[-3000:]
    assert {"mlops-local-storage.template.json", "mlops-local-execution-role.template.json"} <= set(
        _templates(cli_synths["first"].outdir)
    )


def test_two_synths_give_byte_identical_templates(cli_synths: dict[str, CliSynth]) -> None:
    first, second = _templates(cli_synths["first"].outdir), _templates(cli_synths["second"].outdir)
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], f"{name} differs between two synths"


def test_the_app_never_imports_tensorflow(cli_synths: dict[str, CliSynth]) -> None:
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in cli_synths["first"].stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "aws_cdk" in imported, "the import log is missing"
    assert not {module for module in imported if module.split(".")[0] in ("tensorflow", "keras")}


def _cfn_lint(templates: list[Path]) -> subprocess.CompletedProcess[str]:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    return subprocess.run(
        [str(cfn_lint), "--format", "parseable", *map(str, templates)], capture_output=True, text=True, timeout=300
    )


def test_cfn_lint_finds_no_error_in_the_deployed_templates(cli_synths: dict[str, CliSynth]) -> None:
    templates = sorted(cli_synths["first"].outdir.glob("*.template.json"))
    # The account-agnostic stages differ (pseudo parameters in names and ARNs): lint those too.
    templates += [path for stage in ("dev", "prod") for path in synthesized(stage).template_files]
    result = _cfn_lint(templates)
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert result.returncode & 2 == 0 and not errors, result.stdout[-5000:] + result.stderr[-2000:]


def test_cfn_lint_does_report_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.template.json"
    broken.write_text(
        json.dumps(
            {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"VersioningConfiguration": "on"}}}}
        )
    )
    result = _cfn_lint([broken])
    assert result.returncode & 2, result.stdout
