#!/bin/sh
# build_wheels.sh PYTHON SOURCE_DIR OUT_DIR
# Builds the sipedge wheel, plus a wheel for each runtime dependency, into OUT_DIR/wheels.
# Runs on the controller (the role's tasks/wheels.yml, which then reads them with
# wheel_info.py). The project is copied first, so that the build neither writes into the
# collection (build/, *.egg-info) nor picks up stale files from an earlier in-tree build.
# SOURCE_DATE_EPOCH makes the wheel reproducible.
set -eu
python="$1"
src="$2"
out="$3"
rm -rf "$out/src" "$out/wheels"
mkdir -p "$out/src" "$out/wheels"
tar -C "$src" --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.git -cf - . | tar -C "$out/src" -xf -
SOURCE_DATE_EPOCH=315532800
PIP_DISABLE_PIP_VERSION_CHECK=1
export SOURCE_DATE_EPOCH PIP_DISABLE_PIP_VERSION_CHECK
# The build backend normally comes from the controller's Python (no network). When it is
# not there (setuptools without bdist_wheel, i.e. older than 70.1 and no 'wheel' package),
# pip fetches it from the package index into an isolated build environment.
backend_ready() {
    "$python" - "$out/src/pyproject.toml" <<'PY'
import importlib, sys, tomllib
with open(sys.argv[1], "rb") as handle:
    backend = tomllib.load(handle).get("build-system", {}).get("build-backend", "setuptools.build_meta")
importlib.import_module(backend.split(":")[0])
if backend.startswith("setuptools"):
    try:
        importlib.import_module("setuptools.command.bdist_wheel")
    except ImportError:
        importlib.import_module("wheel.bdist_wheel")
PY
}
built=""
if backend_ready >/dev/null 2>&1; then
    if "$python" -m pip wheel --no-build-isolation --wheel-dir "$out/wheels" "$out/src" >"$out/build.log" 2>&1; then
        built=yes
    else
        rm -rf "$out/wheels" && mkdir -p "$out/wheels"
    fi
fi
if [ -z "$built" ]; then
    echo "note: no usable build backend in $python: pip fetches one into an isolated build environment" >&2
    if ! "$python" -m pip wheel --wheel-dir "$out/wheels" "$out/src" >>"$out/build.log" 2>&1; then
        tail -n 30 "$out/build.log" >&2
        echo "error: could not build the sipedge wheel from $src with $python" >&2
        exit 1
    fi
fi
# The copy of the sources is no longer needed; the role reads the wheels with wheel_info.py.
rm -rf "$out/src"
