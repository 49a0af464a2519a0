#!/usr/bin/env bash
# 'make test': set-up, then every test stage in order, each timed; a failed
# stage does not stop the later ones. Ends with the line "N passed, N failed".
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# NAME-2.20 runs stage NAME on the second controller leg, ansible-core 2.20 on Python 3.12.
STAGES=(lint sanity units integration router-test conformance molecule sanity-2.20 units-2.20 integration-2.20 molecule-2.20)
passed=0 failed=0 skipped=0
report=()
failures=()   # "stage: test: message", printed above the last line where CI's tail shows them
start_all=$SECONDS

summary() {
    local line
    echo
    echo "==================== summary ===================="
    for line in "${report[@]}"; do echo "$line"; done
    echo "total: $((SECONDS - start_all)) s, $skipped skipped"
    for line in "${failures[@]}"; do echo "FAILED $line"; done
    echo "$passed passed, $failed failed"
}
trap summary EXIT

# timed NAME CMD...: run CMD, print "stage NAME: N s", add its counts.
timed() {
    local name="$1" t0=$SECONDS rc=0 p=0 f=0 s=0 counts="$RESULTS/$1.counts" listed="$RESULTS/$1.failed" line
    shift
    echo; echo "==================== stage $name ===================="
    rm -f "$counts" "$listed"
    "$@" || rc=$?
    if [ -s "$counts" ]; then read -r p f s <"$counts"; fi
    if [ -s "$listed" ]; then
        while IFS= read -r line; do failures+=("$name: $line"); done <"$listed"
    fi
    # A stage that failed without counting a failure (e.g. its set-up stopped) counts as one.
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1; failures+=("$name: exit code $rc, no failed test counted (see the stage's output)")
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    line="stage $name: $((SECONDS - t0)) s ($p passed, $f failed, $s skipped)"
    echo "$line"; report+=("$line")
    return "$rc"
}

# Set-up shared by the stages (each stage would also do it by itself).
if ! timed setup "$ROOT/scripts/setup.sh" venv packages collections get-pip; then
    echo "set-up failed: no test stage can run"
    exit 1
fi
for stage in "${STAGES[@]}"; do
    leg=()
    case "$stage" in *-2.20) leg=(env SIPEDGE_CORE=2.20) ;; esac
    if [ "$stage" = molecule ] && compgen -G "$ROOT/molecule/*/molecule.yml" >/dev/null; then
        timed docker "$ROOT/scripts/setup.sh" docker image:all || continue
    fi
    # The 2.20 leg's own venv (Python 3.12) and ansible-test bootstrap, timed apart.
    if [ "$stage" = sanity-2.20 ]; then
        timed setup-2.20 "${leg[@]}" "$ROOT/scripts/setup.sh" venv get-pip
    fi
    timed "$stage" "${leg[@]}" "$ROOT/scripts/stage.sh" "${stage%-2.20}"
done
[ "$failed" -eq 0 ]
