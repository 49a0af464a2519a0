#!/usr/bin/env bash
# Stop the dockerd that scripts/setup.sh started (its PID is in .cache/dockerd.pid);
# any other Docker engine is left alone.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pidfile="$BUILD/dockerd.pid"
if [ ! -s "$pidfile" ]; then say "no dockerd started by this project"; exit 0; fi
pid="$(cat "$pidfile")"
if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
    say "dockerd $pid is not running"; rm -f "$pidfile"; exit 0
fi
kill "$pid"
for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$pid" 2>/dev/null; then die "dockerd $pid did not stop within 30 s"; fi
rm -f "$pidfile"
say "stopped dockerd $pid"
