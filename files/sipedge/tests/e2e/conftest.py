"""Fixtures of the end-to-end tests: one router and five SIPp backends per session.

Topology (all on ``SIPEDGE_E2E_NET``, default 127.0.77; ports picked free):

    SIPp UAC  .100 ──> router .1 ──> set 10 (tenant-a.test, disabled.test): a1 .11, a2 .12
                                 ├─> set 20 (tenant-b.test, late.test):     b1 .21, b2 .22
                                 └─> set 30 (ring.test):                    r1 .31 (rings)

``late.test`` starts disabled and is enabled by a test while the router runs.
``SIPEDGE_E2E_ROUTER=kamailio`` runs the same tests against Kamailio 5.6 with the
corrected seed config (tests/kamailio/reference.py), to check the tests themselves.
Without SIPp the tests are skipped, unless ``SIPEDGE_E2E_REQUIRE=1`` (then they fail).
"""
from __future__ import annotations

import os

import pytest

import e2e_harness as h
from testsupport.net import free_udp_port


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: end-to-end test with real UDP sockets on 127.0.0.0/8 (SIPp peers)")


@pytest.fixture(scope="session")
def e2e_workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def backends(e2e_workdir):
    if h.sipp_bin() is None:
        msg = "sipp not found (apt-get install sip-tester)"
        if os.environ.get("SIPEDGE_E2E_REQUIRE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    spec = [("a1", 11, "uas_answer.xml"), ("a2", 12, "uas_answer.xml"),
            ("b1", 21, "uas_answer.xml"), ("b2", 22, "uas_answer.xml"),
            ("r1", 31, "uas_ring.xml")]
    started: dict[str, h.Backend] = {}
    try:
        for name, octet, scenario in spec:
            host = h.addr(octet)
            started[name] = h.Backend(name, host, free_udp_port(host), scenario,
                                      e2e_workdir).start()
        yield started
    finally:
        for b in started.values():
            b.stop()


@pytest.fixture(scope="session")
def router(backends, e2e_workdir):
    kind = os.environ.get("SIPEDGE_E2E_ROUTER", "sipedge")
    sets = {10: [backends["a1"].uri, backends["a2"].uri],
            20: [backends["b1"].uri, backends["b2"].uri],
            30: [backends["r1"].uri]}
    r = h.Router(kind, e2e_workdir, sets)
    try:
        r.start()
        yield r
    finally:
        r.stop()


@pytest.fixture
def alive_router(router):
    """The router, checked to be still running after the test."""
    yield router
    assert router.alive(), "router exited during the test:\n" + router.log_text()[-3000:]
