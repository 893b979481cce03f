#!/usr/bin/env bash
# The project's two commands, `local` and `test`, and three more. Each installs what it needs
# first (idempotent: a hash of pyproject.toml and the requirement files decides whether anything is
# reinstalled).
#   ./dev.sh local [mlops local options]   the whole mission on this machine (`--help` lists them)
#   ./dev.sh test  [pytest args]           the test suite (-m "not slow": the fast tier)
#   ./dev.sh test-training [pytest args]   the training tests again on Python 3.12, the training
#                                          containers' version (.venv-py312), as CI does
#   ./dev.sh lint                          ruff (lint, format) and mypy, as CI runs them first
#   ./dev.sh setup                         installs only, runs nothing (CI's deploy jobs, a real account)
# Supported: CPython 3.11 and 3.12. PYTHON=/path/to/python picks the interpreter; otherwise an
# existing .venv is kept, or the first supported one of python3.11, python3.12, python3 is used.
set -euo pipefail
cd "$(dirname "$0")"

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
export CDK_DISABLE_CLI_TELEMETRY=true
export CDK_DISABLE_VERSION_CHECK=true
# The AWS SDK inside the CDK CLI announces on Node 20 that it will need Node 22 from 2027 (README: use 22).
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
export PIP_DISABLE_PIP_VERSION_CHECK=1
export npm_config_update_notifier=false  # npm's notice of a newer npm than the one installed

# Prints "CPython 3.11.2" for interpreter $1; succeeds if it is CPython of one of the versions in $2.
check_python() {
  "$1" -c 'import platform, sys; print(platform.python_implementation(), platform.python_version())
sys.exit(platform.python_implementation() != "CPython" or ".".join(platform.python_version_tuple()[:2]) not in sys.argv[1].split())' "$2" 2>/dev/null
}

pick_python() {  # pick_python "VERSIONS" CANDIDATE...: the path of $PYTHON, or of the first candidate that passes
  local versions="$1" candidate path described found=""; shift
  for candidate in ${PYTHON:-"$@"}; do
    path="$(command -v "$candidate")" || continue
    if described="$(check_python "$path" "$versions")"; then echo "$path"; return; fi
    [ -n "$found" ] || [ -z "$described" ] || found="$described at $path"
  done
  echo "dev.sh: found ${found:-none of ${PYTHON:-$*}}; needs CPython ${versions// / or } (PYTHON=/path/to/python picks one)" >&2
  exit 1
}

make_venv() {  # make_venv DIR PYTHON: a venv of PYTHON; one made with another interpreter is recreated
  local wanted made; wanted="$("$2" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
  made="$(readlink -f "$1/bin/python" || true)"
  if [ -e "$1" ] && [ "$made" != "$wanted" ]; then
    echo "==> $1 was made with ${made:-an interpreter that is gone}, not $wanted: recreating it"
    rm -rf "$1"
  fi
  [ -x "$1/bin/pip" ] || "$2" -m venv "$1"  # also completes one that was interrupted
}

announce() {  # announce VENV WHAT: which interpreter runs WHAT, for logs
  echo "==> $2 on Python $("$1/bin/python" -c 'import platform; print(platform.python_version())') ($(readlink -f "$1/bin/python"))"
}

install_into() {  # install_into VENV PIP_ARGS...: `pip install PIP_ARGS` pinned by the lock; skipped when the stamp matches
  local venv="$1"; shift
  local stamp="$venv/.installed-$(echo "$@" | cat - requirements-lock.txt requirements-toolkit.txt requirements-training.txt pyproject.toml | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return
  echo "==> installing $* into $venv (first run takes a few minutes)"
  "$venv/bin/pip" install --quiet --upgrade "pip==25.3"
  "$venv/bin/pip" install --quiet -c requirements-lock.txt "$@"
  "$venv/bin/pip" install --quiet --no-deps -r requirements-toolkit.txt
  rm -f "$venv"/.installed-*
  touch "$stamp"
}

install_python() {
  local python
  if [ -z "${PYTHON:-}" ] && check_python .venv/bin/python "3.11 3.12" >/dev/null; then
    python="$(readlink -f .venv/bin/python)"  # kept: the interpreter the existing .venv was made with
  else
    python="$(pick_python "3.11 3.12" python3.11 python3.12 python3)"
  fi
  make_venv .venv "$python"
  # The project itself (editable, so `mlops` runs this tree) with its test and lint tools.
  install_into .venv -e ".[test,dev]"
  fetch_serving_wheels .venv
}

# The serving container's wheels (CPython 3.12, x86_64) that every model artifact ships as code/lib:
# fetched once into inference/model_code/wheels/ (not in git), so synthesis and training need no index.
fetch_serving_wheels() {
  "$1/bin/python" -m inference.model_lib >/dev/null
}

# SageMaker's training containers run Python 3.12: a lean venv with only what the training tests import.
install_training_python() {
  local python; python="$(pick_python 3.12 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12)"
  make_venv .venv-py312 "$python"
  install_into .venv-py312 -r requirements-training.txt
  fetch_serving_wheels .venv-py312
}
TRAINING_TESTS=(tests/test_training_{entry_points,contract,bad_input,records,resume,multi_worker,evaluate,explanations,precision,text}.py)

# checkov pins boto3 and packaging below the project's lock: a venv of its own, used by tests/test_checkov.py.
install_checkov() {
  local stamp=".venv-checkov/.installed-$(cat requirements-checkov.txt requirements-checkov-lock.txt | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return
  make_venv .venv-checkov "$(readlink -f .venv/bin/python)"
  echo "==> installing checkov into .venv-checkov"
  .venv-checkov/bin/pip install --quiet --upgrade "pip==25.3"
  .venv-checkov/bin/pip install --quiet -r requirements-checkov.txt -c requirements-checkov-lock.txt
  rm -f .venv-checkov/.installed-*
  touch "$stamp"
}

install_node() {
  local stamp="node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)"
  [ -f "$stamp" ] && return
  echo "==> installing the AWS CDK CLI and the IAM policy simulator into node_modules"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
}

# ruff over the tree; mypy twice, since training/ is checked as the training container imports it
# (its modules at the root) apart from the rest, which imports it as `training.x` (pyproject.toml).
lint() {
  local status=0
  .venv/bin/ruff check . || status=1
  .venv/bin/ruff format --check . || status=1
  .venv/bin/mypy --always-true __package__ || status=1
  MYPYPATH=training .venv/bin/mypy --always-false __package__ --cache-dir .mypy_cache/container training || status=1
  return "$status"
}

command="${1:-}"
shift || true
case "$command" in
  setup) install_python; install_node ;;
  local) install_python; install_node; exec .venv/bin/mlops local "$@" ;;
  # One worker more than cores: many tests wait on a server, a subprocess or the CDK CLI, and
  # worksteal moves queued tests from a busy worker to an idle one (docs/tests.md).
  test)  install_python; install_checkov; install_node; announce .venv tests
         exec .venv/bin/pytest -n "$(( $(nproc) + 1 ))" --dist worksteal "$@" ;;
  lint)  install_python; announce .venv "ruff and mypy"; lint ;;
  # `python -m` puts the repository on sys.path: this venv holds no editable install of the project.
  test-training) install_training_python; announce .venv-py312 "training tests"
                 exec .venv-py312/bin/python -m pytest -n auto "${TRAINING_TESTS[@]}" "$@" ;;
  *) echo "usage: ./dev.sh local [mlops local options] | test [pytest args] | test-training [pytest args] | lint | setup" >&2
     exit 2 ;;
esac
