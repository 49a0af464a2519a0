#!/usr/bin/env bash
# The demo behind `make demo`: a local Debian 12 container becomes a SIP edge through
# `ansible-playbook -i inventories/demo playbooks/site.yml`; two demo tenants, each with a
# SIPp backend on the container's loopback, get one call each through the edge, and the
# demo prints which backend answered. Nothing leaves the container.
#
#   SIPEDGE_DEMO_KEEP=0   remove the container at the end (default: keep it to look around)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=sipedge-demo                 # the container, and the host name in inventories/demo
INVENTORY="$ROOT/inventories/demo"
SIPP_SRC="$ROOT/molecule/shared/sipp"
SIPP_DIR=/opt/sipedge-demo/sipp   # inside the container
WORK=/tmp/sipedge-demo            # inside the container
EDGE=127.0.0.1:5060

# Demo tenants: domain, dispatcher set, backend name, backend address (container loopback).
TENANTS=(
    "alpha.demo.test 10 backend-alpha 127.0.0.2"
    "beta.demo.test 20 backend-beta 127.0.0.3"
)

in_node() { docker exec -i "$NAME" "$@"; }

# --- set-up: venv, Docker, base image, collections (each step only does what is missing) ---
bash "$ROOT/scripts/setup.sh" venv docker image collections

# --- the node --------------------------------------------------------------------------------
if docker container inspect "$NAME" >/dev/null 2>&1; then
    say "removing the previous demo container $NAME"
    docker rm -f "$NAME" >/dev/null
fi
say "starting $NAME from $IMAGE (Debian 12, systemd)"
docker run -d --name "$NAME" --hostname "$NAME" \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    -e container=docker "$IMAGE" /lib/systemd/systemd >/dev/null
state=""
for _ in $(seq 60); do
    state="$(in_node systemctl is-system-running 2>/dev/null || true)"
    case "$state" in running | degraded) break ;; esac
    sleep 1
done
case "$state" in running | degraded) ;; *) die "$NAME: systemd did not come up (state '$state')" ;; esac

# --- the edge: the collection's own playbook and the example inventory -----------------------
say "ansible-playbook -i inventories/demo playbooks/site.yml"
(cd "$ROOT" && ansible-playbook -i "$INVENTORY" playbooks/site.yml)

# --- the test tools in the node: SIPp (the foundation's image has it) and the scenarios -------
if ! in_node sh -c 'command -v sipp' >/dev/null; then
    say "installing SIPp (sip-tester) in $NAME"
    in_node sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester' >/dev/null
fi
in_node mkdir -p "$SIPP_DIR" "$WORK"
docker cp "$SIPP_SRC/." "$NAME:$SIPP_DIR/"

# --- demo tenants ----------------------------------------------------------------------------
# Stand-in for the tenants role, which will write these rows from inventory variables: the
# demo writes them with Python's sqlite3, as the service user. Demo scaffolding only; not a
# way to manage routing data.
reloads() { in_node journalctl -u sipedge.service -o cat -q --no-pager | grep -c 'routing data reloaded' || true; }
before="$(reloads)"
for t in "${TENANTS[@]}"; do
    read -r domain setid name ip <<<"$t"
    say "tenant $domain: dispatcher set $setid -> sip:$ip:5070 ($name, SIPp on the node's loopback)"
    in_node sh -c "cd $WORK && setsid sh -c 'timeout 60 sipp -sf $SIPP_DIR/uas.xml -set backend $name \
        -i $ip -p 5070 -m 1 -aa -nostdin > $name.out 2>&1' >/dev/null 2>&1 &"
    in_node runuser -u sipedge -- /opt/sipedge/bin/python - "$domain" "$setid" "sip:$ip:5070" <<'PY'
import sqlite3, sys
domain, setid, destination = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with sqlite3.connect("/var/lib/sipedge/routing.db", timeout=5) as conn:
    conn.execute("INSERT OR REPLACE INTO sip_domains (domain, dispatcher_setid, enabled, comment) "
                 "VALUES (?, ?, 1, 'demo')", (domain, setid))
    conn.execute("INSERT OR IGNORE INTO dispatcher (setid, destination, flags, priority, attrs) "
                 "VALUES (?, ?, 0, 0, '')", (setid, destination))
PY
done
# The router notices the new rows by itself (no restart): wait for its reload.
for _ in $(seq 50); do
    [ "$(reloads)" -gt "$before" ] && break
    sleep 0.2
done
in_node journalctl -u sipedge.service -o cat -q --no-pager | grep 'routing data reloaded' | tail -n 1 | sed 's/^/    edge: /'

# --- one call per tenant -----------------------------------------------------------------------
failed=0
caller=10
for t in "${TENANTS[@]}"; do
    read -r domain setid name ip <<<"$t"
    caller=$((caller + 1))
    log="$WORK/call-$domain.log"
    if in_node sh -c "cd $WORK && timeout 20 sipp -sf $SIPP_DIR/uac.xml -set domain $domain -i 127.0.0.$caller \
            -p 5062 -m 1 -nostdin -recv_timeout 3000 -trace_logs -log_file $log $EDGE > call-$domain.out 2>&1"; then
        answered="$(in_node sh -c "sed -n 's/.*answered_by=\([^ ]*\).*/\1/p' $log" | tail -n 1)"
        say "call to sip:service@$domain via the edge ($EDGE): answered by $answered (expected $name at $ip:5070)"
        [ "$answered" = "$name" ] || failed=$((failed + 1))
    else
        say "call to sip:service@$domain via the edge ($EDGE): FAILED (no answer; see 'docker exec $NAME journalctl -u sipedge')"
        failed=$((failed + 1))
    fi
done

if [ "${SIPEDGE_DEMO_KEEP:-1}" = 0 ]; then
    docker rm -f "$NAME" >/dev/null
    say "removed the demo container $NAME"
else
    say "the edge keeps running in container $NAME: 'docker exec $NAME journalctl -u sipedge' shows its log;"
    say "'docker rm -f $NAME' removes it"
fi
[ "$failed" -eq 0 ] || die "demo: $failed call(s) were not answered by the expected backend"
say "demo: both calls were answered by their tenant's backend through the edge"
