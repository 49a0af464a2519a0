"""Helpers shared by the Molecule scenarios' testinfra tests: SIPp backends and calls
inside the edge container, the router's journal, polling with a bound.

Everything runs inside the container (testinfra's `host`): SIPp backends on the
container's loopback 127.0.0.x, callers sending to the edge on 127.0.0.1:5060.
A scenario's conftest.py puts this folder on sys.path and imports from here.
"""

import os
import re
import time

SERVICE = "sipedge.service"
SIPP_DIR = "/opt/sipedge-test/sipp"  # molecule/shared/sipp/, copied by the prepare step
WORK = "/tmp/sipedge-test"


def collection_root():
    """The collection checkout Molecule runs from (the controller side)."""
    return os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", ".."))


def journal_count(host, text, unit=SERVICE):
    """How many journal lines of the unit contain text (compare before/after an action)."""
    out = host.run("journalctl -u %s --no-pager -o cat -q | grep -cF -- %s", unit, text).stdout
    return int(out.strip() or 0)


def journal_tail(host, lines=30, unit=SERVICE):
    return host.run("journalctl -u %s --no-pager -o cat -q -n %s", unit, str(lines)).stdout


def wait_for(predicate, timeout=10.0, step=0.2):
    """Poll predicate() until it returns something truthy; return it, or the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def start_backend(host, name, ip, port=5070):
    """A SIPp UAS that answers calls and the edge's OPTIONS pings, in the background, for at
    most 30 s; stop_backend() ends it and says what it received.

    Not -m 1: SIPp counts an OPTIONS ping as a call, so a ping landing before the test's
    call would end the backend and leave the call unanswered.
    """
    host.check_output("mkdir -p %s && rm -f %s/%s.msg %s/%s.pid", WORK, WORK, name, WORK, name)
    # the PID is timeout's (exec keeps the shell's); timeout passes a TERM on to SIPp
    host.check_output(
        "cd %s && setsid sh -c 'echo $$ > %s.pid; exec timeout 30 sipp -sf %s/uas.xml -set backend %s -i %s -p %s"
        " -aa -nostdin -trace_msg -message_file %s.msg -trace_err -error_file %s.err > %s.out 2>&1'"
        " >/dev/null 2>&1 &",
        WORK, name, SIPP_DIR, name, ip, str(port), name, name, name)
    listening = wait_for(lambda: host.socket("udp://%s:%d" % (ip, port)).is_listening, timeout=10)
    assert listening, "SIPp backend %s did not start" % name


def stop_backend(host, name):
    """Stop the backend started as name (by its PID, waiting until it is gone) and return
    the methods of the requests it received, in order, OPTIONS pings left out."""
    pid = host.check_output("cat %s/%s.pid", WORK, name)
    host.run("kill %s; timeout 10 sh -c 'while kill -0 %s 2>/dev/null; do sleep 0.1; done'", pid, pid)
    trace = host.run("cat %s/%s.msg", WORK, name).stdout
    methods = re.findall(r"message received [^:\n]*:\s*\n\s*([A-Z]+) ", trace)
    return [method for method in methods if method != "OPTIONS"]


def place_call(host, domain, caller_ip, timeout_ms=3000):
    """One INVITE/ACK/BYE call from a SIPp UAC to the edge; returns (rc, log text, messages)."""
    tag = domain.replace(".", "-")
    result = host.run(
        "cd %s && rm -f %s.log %s.msg && timeout 20 sipp -sf %s/uac.xml -set domain %s -i %s -p 5062 -m 1 -nostdin"
        " -recv_timeout %s -trace_logs -log_file %s.log -trace_msg -message_file %s.msg"
        " 127.0.0.1:5060 > %s.uac.out 2>&1",
        WORK, tag, tag, SIPP_DIR, domain, caller_ip, str(timeout_ms), tag, tag, tag)
    log = host.run("cat %s/%s.log", WORK, tag).stdout
    messages = host.run("cat %s/%s.msg", WORK, tag).stdout
    return result.rc, log, messages
