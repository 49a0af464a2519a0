#!/usr/bin/env bash
# 'make bench': SIPp call-rate ramp through sipedge, then through Kamailio 5.6
# running the corrected seed config, in one invocation; prints a table per
# router and "ratio sipedge/kamailio = X.XX (...)". Not a test: it always
# reports, and fails only when a router could not be benchmarked at all.
# Arguments go to files/sipedge/bench/bench.py (see --help and docs/benchmark.md),
# e.g. scripts/bench.sh --routers sipedge --profile 2000
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$ROOT/scripts/setup.sh" venv packages:sip-tester,sqlite3,kamailio,kamailio-sqlite-modules
PY="${SIPEDGE_BENCH_PYTHON:-$VENV/bin/python}"
[ -x "$PY" ] || die "missing: $PY (run 'make venv')"
"$PY" -c 'import sipedge' 2>/dev/null || die "the router is not installed in .venv (run 'make venv')"

OUT="$RESULTS/bench"
mkdir -p "$OUT"
say "benchmark: logs under ${OUT#"$ROOT"/}, summary in ${OUT#"$ROOT"/}/bench.txt (about 10 min)"
rc=0
"$PY" "$ROOT/files/sipedge/bench/bench.py" --workdir "$OUT/run" --json "$OUT/bench.json" "$@" \
    2>&1 | tee "$OUT/bench.txt" || rc=$?
exit "$rc"
