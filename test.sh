#!/usr/bin/env bash
# The tests, with what they need: a Python venv with MLflow for the tracking tests, Slurm for
# the cluster test (tests/slurm/cluster.sh install: apt-get, as root), then
# `cargo test --workspace` (extra arguments are passed on: `./test.sh -p whet --lib`).
#
# The venv lives in .venv-test/ (ignored by git; WHET_TEST_VENV moves it) and is made once:
# `python3 -m venv` and `pip install mlflow==3.17.2` (quiet, through pip's cache). The tests
# find mlflow through WHET_TEST_MLFLOW. When the venv cannot be made, the MLflow tests are
# skipped with a printed reason, except with CI=true, where that is an error.
set -euo pipefail
cd "$(dirname "$0")"

MLFLOW_VERSION=3.17.2
VENV="${WHET_TEST_VENV:-.venv-test}"

fail_or_skip() {
    if [ "${CI:-}" = "true" ]; then
        echo "test.sh: $1" >&2
        exit 1
    fi
    echo "test.sh: $1; the MLflow tests will be skipped" >&2
}

venv_works() {
    python3 -c 'import venv, ensurepip' 2>/dev/null
}

setup_mlflow() {
    if [ -x "$VENV/bin/mlflow" ] && [ "$(cat "$VENV/.whet-mlflow" 2>/dev/null)" = "$MLFLOW_VERSION" ]; then
        return 0
    fi
    if ! command -v python3 >/dev/null; then
        fail_or_skip "python3 is not installed (the tracking tests run a real MLflow server)"
        return 1
    fi
    if ! venv_works; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "test.sh: installing python3-venv (apt-get)" >&2
            apt-get install -y -qq python3-venv >/dev/null \
                || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; } \
                || true
        fi
        if ! venv_works; then
            fail_or_skip "python3 cannot make a venv: install python3-venv (Debian/Ubuntu: sudo apt-get install python3-venv)"
            return 1
        fi
    fi
    echo "test.sh: installing mlflow==$MLFLOW_VERSION into $VENV/ (once)" >&2
    rm -rf "$VENV"
    if python3 -m venv "$VENV" \
        && "$VENV/bin/pip" install -q --disable-pip-version-check "mlflow==$MLFLOW_VERSION"; then
        echo "$MLFLOW_VERSION" > "$VENV/.whet-mlflow"
    else
        fail_or_skip "pip could not install mlflow==$MLFLOW_VERSION into $VENV/"
        return 1
    fi
}

if setup_mlflow; then
    WHET_TEST_MLFLOW="$(cd "$VENV/bin" && pwd)/mlflow"
    export WHET_TEST_MLFLOW
fi

# The Slurm test starts its own single-node cluster with tests/slurm/cluster.sh (root; Debian's
# slurm-wlm and munge, installed here when missing).
if tests/slurm/cluster.sh install; then
    WHET_TEST_SLURM="$(pwd)/tests/slurm/cluster.sh"
    export WHET_TEST_SLURM
elif [ "${CI:-}" = "true" ]; then
    echo "test.sh: Slurm could not be installed (see above); under CI=true its test must run" >&2
    exit 1
else
    echo "test.sh: Slurm could not be installed; the Slurm test will be skipped" >&2
fi
exec cargo test --workspace "$@"
