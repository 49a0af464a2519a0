# shellcheck shell=bash
# shellcheck disable=SC2034  # the settings are used by the scripts that source this file
# Shared settings and helpers for the Makefile's scripts. Sourced, never run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/.cache"                       # every build artefact lives here (git-ignored)
VENV="$ROOT/.venv"
LOGS="$BUILD/logs"
RESULTS="$BUILD/results"
COLLECTIONS="$BUILD/collections"           # ANSIBLE_COLLECTIONS_PATH for all stages
PLACED="$COLLECTIONS/ansible_collections/voip/sip_edge"
IMAGE="${SIPEDGE_MOLECULE_IMAGE:-sipedge-molecule-base:bookworm}"
export SIPEDGE_MOLECULE_IMAGE="$IMAGE"
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS"
case ":$PATH:" in *":$VENV/bin:"*) ;; *) export PATH="$VENV/bin:$PATH" ;; esac
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
