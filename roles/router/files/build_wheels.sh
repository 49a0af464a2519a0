#!/bin/sh
# build_wheels.sh PYTHON SOURCE_DIR OUT_DIR
# Builds the sipedge wheel, plus a wheel for each runtime dependency, into OUT_DIR/wheels.
# Runs on the controller (the role's install.yml). The project is copied first, so that
# the build neither writes into the collection (build/, *.egg-info) nor picks up stale
# files from an earlier in-tree build. SOURCE_DATE_EPOCH makes the wheel reproducible:
# the same sources give the same bytes, so the node reinstalls only when the package changed.
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
# The build backend normally comes from the controller's Python (no network); without it,
# let pip fetch it into an isolated build environment from the package index.
if ! "$python" -m pip wheel --no-build-isolation --wheel-dir "$out/wheels" "$out/src" >"$out/build.log" 2>&1; then
    echo "note: build without isolation failed, retrying with an isolated build environment" >&2
    rm -rf "$out/wheels" && mkdir -p "$out/wheels"
    if ! "$python" -m pip wheel --wheel-dir "$out/wheels" "$out/src" >>"$out/build.log" 2>&1; then
        tail -n 30 "$out/build.log" >&2
        echo "error: could not build the sipedge wheel from $src with $python" >&2
        exit 1
    fi
fi
ls "$out/wheels"
