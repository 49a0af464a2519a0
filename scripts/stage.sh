#!/usr/bin/env bash
# One test stage of 'make test': stage.sh NAME, NAME one of
# lint sanity units integration router-test conformance molecule.
# Each stage does its own set-up, runs, and writes "PASSED FAILED SKIPPED" to
# .cache/results/NAME.counts; its exit code is non-zero when anything failed.
# With SIPEDGE_CORE=2.20 (lib.sh) sanity, units, integration and molecule run on the
# ansible-core 2.20 leg instead, and their results are named NAME-2.20.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SETUP="$ROOT/scripts/setup.sh"
STAGE="${1:-}"
COUNTS="$RESULTS/$STAGE$LEG.counts"
FAILED="$RESULTS/$STAGE$LEG.failed"   # the failed tests' names, for test.sh's summary

# record PASSED FAILED SKIPPED, and succeed only when nothing failed.
record() { echo "$1 $2 $3" >"$COUNTS"; [ "$2" -eq 0 ]; }

junit() { python "$ROOT/scripts/junit_counts.py" --failed "$FAILED" "$@"; }

# pytest_stage DIR JUNIT [ARGS...]: run pytest on DIR; exit code 5 (nothing
# collected) is reported as a skip, not as a pass or a failure.
pytest_stage() {
    local dir="$1" xml="$2" rc=0; shift 2
    rm -f "$xml"
    pytest "$dir" -p no:cacheprovider --junitxml="$xml" "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        say "$STAGE: pytest collected no tests in ${dir#"$ROOT"/}: skipped"
        record 0 0 1; return
    fi
    if [ ! -s "$xml" ]; then echo "$STAGE: pytest wrote no results (exit code $rc)" >>"$FAILED"; record 0 1 0; return; fi
    # shellcheck disable=SC2046  # three numbers
    record $(junit "$xml") || return 1
    [ "$rc" -eq 0 ]
}

stage_lint() {
    local p=0 f=0
    "$SETUP" venv collections
    cd "$ROOT"
    say "ansible-lint (profile production, .ansible-lint)"
    local color=()
    [ -t 1 ] || color=(--nocolor)
    # Its own ANSIBLE_HOME: ansible-lint puts $ANSIBLE_HOME/collections first on the
    # collections path, and ~/.ansible/collections may hold another checkout's
    # copy of this collection (Molecule installs there), hiding this one's modules.
    if ANSIBLE_HOME="$BUILD/ansible-home" ansible-lint "${color[@]}"; then p=$((p + 1)); else f=$((f + 1)); echo ansible-lint >>"$FAILED"; fi
    say "antsibull-changelog lint"
    if antsibull-changelog lint; then p=$((p + 1)); else f=$((f + 1)); echo "antsibull-changelog lint" >>"$FAILED"; fi
    record "$p" "$f" 0
}

# ansible_test COMMAND...: run ansible-test in the placed copy of the collection,
# keep its output under .cache/results, count its JUnit results.
ansible_test() {
    local kind="$1" rc=0 out="$RESULTS/$STAGE$LEG-output"
    cd "$PLACED"
    rm -rf tests/output "$out"
    ansible-test "$@" --venv --python "$CORE_PYTHON" --color no || rc=$?
    [ -d tests/output ] && cp -r tests/output "$out"
    if compgen -G "tests/output/junit/*.xml" >/dev/null; then
        # shellcheck disable=SC2046  # three numbers
        record $(junit tests/output/junit/*.xml) || return 1
    else
        say "$kind: ansible-test wrote no results (exit code $rc)"
        echo "ansible-test $kind wrote no results (exit code $rc)" >>"$FAILED"
        record 0 1 0 || return 1
    fi
    [ "$rc" -eq 0 ]
}

stage_sanity() {
    "$SETUP" venv collections get-pip
    "$SETUP" packages:shellcheck
    ansible_test sanity --junit
}

stage_units() {
    "$SETUP" venv collections get-pip
    if [ -z "$(find "$ROOT/tests/unit" -name 'test_*.py' -print -quit 2>/dev/null)" ]; then
        say "units: no unit tests under tests/unit yet (no tests/unit/**/test_*.py): skipped"
        record 0 0 1; return
    fi
    ansible_test units
}

stage_integration() {
    "$SETUP" venv collections get-pip
    if ! compgen -G "$ROOT/tests/integration/targets/*/aliases" >/dev/null; then
        say "integration: no target under tests/integration/targets yet: skipped"
        record 0 0 1; return
    fi
    # Each target runs on the controller (local connection) on a DB in a temporary directory.
    ansible_test integration
}

stage_router-test() {
    local dir="$ROOT/files/sipedge/tests"
    if [ ! -d "$dir" ]; then
        say "router-test: files/sipedge/tests does not exist yet: skipped"
        record 0 0 1; return
    fi
    "$SETUP" venv
    "$SETUP" packages:sip-tester,sqlite3
    cd "$ROOT/files/sipedge"
    pytest_stage "$dir" "$RESULTS/router-test.xml"
}

stage_conformance() {
    local dir="$ROOT/tests/conformance"
    if [ ! -d "$dir" ]; then
        say "conformance: tests/conformance does not exist yet: skipped"
        record 0 0 1; return
    fi
    "$SETUP" venv
    "$SETUP" packages:sip-tester,sqlite3,kamailio,kamailio-sqlite-modules
    cd "$ROOT"
    pytest_stage "$dir" "$RESULTS/conformance.xml"
}

# Every scenario under molecule/ on the main leg; on another leg only 'default' (the
# role on each Debian release), which is what a controller version can change.
stage_molecule() {
    local p=0 f=0 name dir xml rc tp tf
    if ! compgen -G "$ROOT/molecule/*/molecule.yml" >/dev/null; then
        say "molecule: no scenario under molecule/ yet: skipped"
        record 0 0 1; return
    fi
    "$SETUP" venv docker image:all collections
    for dir in "$PLACED"/molecule/*/; do
        name="$(basename "$dir")"
        [ -f "$dir/molecule.yml" ] || continue
        [ -z "$LEG" ] || [ "$name" = default ] || continue
        say "molecule test -s $name (ansible-core $CORE; images $SIPEDGE_MOLECULE_IMAGE, $SIPEDGE_MOLECULE_IMAGE_TRIXIE)"
        xml="$RESULTS/molecule$LEG-$name.xml"
        rm -f "$xml"
        # Molecule keeps a scenario's state and its interpolated molecule.yml (the platforms
        # its playbooks create) in ~/.ansible/tmp/molecule.<hash of the folder name>.<scenario>,
        # the same folder for every checkout of this collection (all named sip_edge): two
        # checkouts running a scenario at once would create each other's containers. Each
        # checkout keeps its own, in .cache/molecule-ephemeral/.
        # The testinfra verifier is pytest: its JUnit file gives the counts.
        if (cd "$PLACED" && MOLECULE_EPHEMERAL_DIRECTORY="$BUILD/molecule-ephemeral/$name" \
            PYTEST_ADDOPTS="--junitxml=$xml" molecule test -s "$name"); then rc=0; else rc=1; fi
        read -r tp tf _ < <(if [ -s "$xml" ]; then junit "$xml"; else echo 0 0 0; fi)
        # The scenario itself counts once when its verifier did not run or did not fail.
        if [ "$rc" -ne 0 ]; then
            say "molecule scenario $name FAILED"
            [ "$tf" -gt 0 ] || { tf=1; echo "molecule scenario $name: failed outside its tests (see its log above)" >>"$FAILED"; }
        elif [ "$tp" -eq 0 ]; then
            tp=1
        fi
        p=$((p + tp)); f=$((f + tf))
    done
    record "$p" "$f" 0
}

rm -f "$COUNTS" "$FAILED"
case "$LEG:$STAGE" in
    *:sanity | *:units | *:integration | *:molecule) lock_placed; "stage_$STAGE" ;;
    -*) die "stage $STAGE runs on the main controller leg only (ansible-core 2.19), not with SIPEDGE_CORE=$CORE" ;;
    :lint) lock_placed; "stage_$STAGE" ;;
    :router-test | :conformance) "stage_$STAGE" ;;
    *) die "usage: scripts/stage.sh lint|sanity|units|integration|router-test|conformance|molecule" ;;
esac
