#!/usr/bin/env bash
# The project's two commands. Each one installs what it needs first (idempotent: a hash of
# the requirement files decides whether anything is reinstalled).
#   ./dev.sh local [--network cnn|rnn|autoencoder|transfer]   the whole mission on this machine
#   ./dev.sh test  [pytest args]                              the test suite
set -euo pipefail
cd "$(dirname "$0")"

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
export CDK_DISABLE_CLI_TELEMETRY=true
export CDK_DISABLE_VERSION_CHECK=true
# The AWS SDK inside the CDK CLI announces on Node 20 that it will need Node 22 from 2027 (README: use 22).
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
export PIP_DISABLE_PIP_VERSION_CHECK=1

python_for_venv() {
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$candidate"; return
    fi
  done
  echo "Python 3.11 or newer is needed" >&2; exit 1
}

install_python() {
  local stamp=".venv/.installed-$(cat requirements.txt requirements-lock.txt requirements-toolkit.txt pyproject.toml | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return
  echo "==> installing Python dependencies into .venv (first run takes a few minutes)"
  [ -x .venv/bin/python ] || "$(python_for_venv)" -m venv .venv
  .venv/bin/pip install --quiet --upgrade "pip==25.3"
  .venv/bin/pip install --quiet -r requirements.txt -c requirements-lock.txt
  .venv/bin/pip install --quiet --no-deps -r requirements-toolkit.txt
  .venv/bin/pip install --quiet --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*
  touch "$stamp"
}

install_node() {
  local stamp="node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)"
  [ -f "$stamp" ] && return
  echo "==> installing the AWS CDK CLI into node_modules"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
}

command="${1:-}"
shift || true
case "$command" in
  local) install_python; install_node; exec .venv/bin/mlops local "$@" ;;
  test)  install_python; install_node; exec .venv/bin/pytest -n auto "$@" ;;
  *) echo "usage: ./dev.sh local [--network NAME] | ./dev.sh test [pytest args]" >&2; exit 2 ;;
esac
