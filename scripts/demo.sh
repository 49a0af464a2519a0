#!/usr/bin/env bash
# The demo behind `make demo`: a local Debian 12 container becomes a SIP edge through
# `ansible-playbook -i inventories/demo playbooks/site.yml`, which also writes the demo
# inventory's tenants into the edge's routing DB (the tenants role). Each tenant has a SIPp
# backend on the container's loopback and gets one call through the edge; the demo prints
# which backend answered. Nothing leaves the container.
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

in_node() { docker exec -i "$NAME" "$@"; }

# --- set-up: venv, Docker, base image, collections (each step only does what is missing) ---
bash "$ROOT/scripts/setup.sh" venv docker image collections

# The demo's tenants come from the inventory (inventories/demo/group_vars/sip_edge.yml): one
# line "DOMAIN BACKEND HOST PORT" per tenant, from its first domain and destination (the
# destination's description names the SIPp backend that answers it).
mapfile -t TENANTS < <(ansible-inventory -i "$INVENTORY" --host "$NAME" | python -c '
import json, re, sys
for tenant in json.load(sys.stdin)["sip_edge_tenants"]:
    destination = tenant["destinations"][0]
    host, port = re.fullmatch(r"sip:([^:;]+):(\d+)", destination["uri"]).groups()
    print(tenant["domains"][0], destination["description"], host, port)')
[ ${#TENANTS[@]} -gt 0 ] || die "inventories/demo defines no tenants (sip_edge_tenants)"

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

# --- the test tools in the node: SIPp (the foundation's image has it) and the scenarios -------
if ! in_node sh -c 'command -v sipp' >/dev/null; then
    say "installing SIPp (sip-tester) in $NAME"
    in_node sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester' >/dev/null
fi
in_node mkdir -p "$SIPP_DIR" "$WORK"
docker cp "$SIPP_SRC/." "$NAME:$SIPP_DIR/"

# --- the tenants' backends: a SIPp process per tenant on the node's loopback ----------------
# Started before the playbook, so that the edge's first health checks find them up. Each
# answers calls and the edge's OPTIONS pings, and ends after 5 minutes. No -m 1: SIPp
# counts an OPTIONS ping as a call, and a ping before the demo's call would end it.
for t in "${TENANTS[@]}"; do
    read -r domain name ip port <<<"$t"
    say "tenant $domain: backend $name (SIPp) on sip:$ip:$port in the node"
    in_node sh -c "cd $WORK && setsid sh -c 'timeout 300 sipp -sf $SIPP_DIR/uas.xml -set backend $name \
        -i $ip -p $port -aa -nostdin > $name.out 2>&1' >/dev/null 2>&1 &"
done

# --- the edge and its tenants: the collection's own playbook and the demo inventory ----------
# The router role installs and starts sipedge; the tenants role writes the tenants of
# inventories/demo/group_vars into its routing DB, which the running router reads by itself.
reloads() { in_node journalctl -u sipedge.service -o cat -q --no-pager | grep -c 'routing data reloaded' || true; }
before="$(reloads)"
say "ansible-playbook -i inventories/demo playbooks/site.yml"
(cd "$ROOT" && ansible-playbook -i "$INVENTORY" playbooks/site.yml)

# The router reads the committed rows by itself, within its poll interval (no restart).
for _ in $(seq 50); do
    [ "$(reloads)" -gt "$before" ] && break
    sleep 0.2
done
[ "$(reloads)" -gt "$before" ] || die "the edge did not load the tenants' routing data (see 'docker exec $NAME journalctl -u sipedge')"
in_node journalctl -u sipedge.service -o cat -q --no-pager | grep 'routing data reloaded' | tail -n 1 | sed 's/^/    edge: /'

# --- one call per tenant -----------------------------------------------------------------------
failed=0
caller=10
for t in "${TENANTS[@]}"; do
    read -r domain name ip port <<<"$t"
    caller=$((caller + 1))
    log="$WORK/call-$domain.log"
    if in_node sh -c "cd $WORK && timeout 20 sipp -sf $SIPP_DIR/uac.xml -set domain $domain -i 127.0.0.$caller \
            -p 5062 -m 1 -nostdin -recv_timeout 3000 -trace_logs -log_file $log $EDGE > call-$domain.out 2>&1"; then
        answered="$(in_node sh -c "sed -n 's/.*answered_by=\([^ ]*\).*/\1/p' $log" | tail -n 1)"
        say "call to sip:service@$domain via the edge ($EDGE): answered by $answered (expected $name at $ip:$port)"
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
say "demo: every call was answered by its tenant's backend through the edge"
