# shellcheck shell=bash
# shellcheck disable=SC2034  # the settings are used by the scripts that source this file
# Shared settings and helpers for the Makefile's scripts. Sourced, never run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/.cache"                       # every build artefact lives here (git-ignored)
LOGS="$BUILD/logs"
RESULTS="$BUILD/results"
COLLECTIONS="$BUILD/collections"           # ANSIBLE_COLLECTIONS_PATH for all stages
PLACED="$COLLECTIONS/ansible_collections/voip/sip_edge"
# The Molecule base images, one per Debian release the role is tested on.
RELEASES=(bookworm trixie)
export SIPEDGE_MOLECULE_IMAGE="${SIPEDGE_MOLECULE_IMAGE:-sipedge-molecule-base:bookworm}"
export SIPEDGE_MOLECULE_IMAGE_TRIXIE="${SIPEDGE_MOLECULE_IMAGE_TRIXIE:-sipedge-molecule-base:trixie}"
IMAGE="$SIPEDGE_MOLECULE_IMAGE"            # the Debian 12 one (the demo's)
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS"
# The controller legs (README "Supported ansible-core"): SIPEDGE_CORE picks the
# ansible-core series, each with its own Python, venv and exact lock file.
CORE="${SIPEDGE_CORE:-2.19}"
case "$CORE" in
    2.19) CORE_PYTHON=3.11 PYTHON_VAR=SIPEDGE_PYTHON VENV="$ROOT/.venv" LOCK="$ROOT/requirements/controller.txt" ;;
    2.20) CORE_PYTHON=3.12 PYTHON_VAR=SIPEDGE_PYTHON_2_20 VENV="$ROOT/.venv-2.20" LOCK="$ROOT/requirements/controller-2.20.txt" ;;
    *) printf 'sipedge: SIPEDGE_CORE=%s: the controller legs are 2.19 and 2.20\n' "$CORE" >&2; exit 1 ;;
esac
# Stages of another leg than the main one (2.19) carry its name: sanity-2.20.
LEG=""
[ "$CORE" = 2.19 ] || LEG="-$CORE"
export PATH="$VENV/bin:$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Plain output in logs (CI); colours stay on a terminal.
if [ ! -t 1 ]; then export NO_COLOR=1 ANSIBLE_NOCOLOR=1 PY_COLORS=0; fi
mkdir -p "$LOGS" "$RESULTS"

say() { printf '==> %s\n' "$*"; }

# die MESSAGE: one clear line on stderr, no trace, non-zero exit.
die() { printf 'sipedge: %s\n' "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

# logged NAME CMD...: run CMD with its output in $LOGS/NAME.log; on failure show
# the end of that log and stop with one line naming it.
logged() {
    local name="$1"; shift
    if ! "$@" >"$LOGS/$name.log" 2>&1; then
        tail -n 25 "$LOGS/$name.log" >&2
        die "$name failed: '$*' (full log: ${LOGS#"$ROOT"/}/$name.log)"
    fi
}

# sha FILE...: one hash over the contents of the files that exist.
sha() {
    local f
    for f in "$@"; do if [ -f "$f" ]; then cat "$f"; fi; done | sha256sum | cut -d' ' -f1
}

# lock_placed: hold .cache/placed.lock until this process ends, so that two
# runs in one checkout never re-copy the placed collection under each other.
lock_placed() {
    [ -z "${SIPEDGE_PLACED_LOCKED:-}" ] || return 0
    exec 9>"$BUILD/placed.lock"
    if ! flock -n 9; then
        say "waiting for another run in this checkout to release .cache/collections"
        flock 9
    fi
    export SIPEDGE_PLACED_LOCKED=1
}

# pick_python: the first interpreter of the leg's Python version (CORE_PYTHON, above).
# PYTHON_VAR names the setting that points at it (SIPEDGE_PYTHON, SIPEDGE_PYTHON_2_20).
pick_python() {
    local c pyenv="${PYENV_ROOT:-$HOME/.pyenv}"
    for c in "${!PYTHON_VAR:-}" "python$CORE_PYTHON" python3 "$pyenv"/versions/"$CORE_PYTHON".*/bin/python3; do
        if [ -z "$c" ] || ! have "$c"; then continue; fi
        if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, sys.argv[1].split("."))))' \
            "$CORE_PYTHON" 2>/dev/null; then
            "$c" -c 'import sys; print(sys.executable)'; return 0
        fi
    done
    return 1
}
