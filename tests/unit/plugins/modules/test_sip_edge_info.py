"""sip_edge_info's main() against a real routing DB and real Unix sockets."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading

import pytest

from ansible_collections.voip.sip_edge.plugins.modules import sip_edge_info
from ansible_collections.voip.sip_edge.tests.unit.plugins.modules.utils import run_module

# What `sipedge ctl --json dispatcher list` answers (docs/CONTRACT.md).
SETS = [{'setid': 10, 'algorithm': 9, 'destinations': [
    {'index': 0, 'uri': 'sip:10.0.1.10:5060', 'state': 'AP', 'status': 'active', 'probing': True, 'pinned': False, 'flags': 8,
     'priority': 0, 'attrs': 'weight=50', 'weight': 50, 'probing_count': 0, 'last_ping': 1795989615.051, 'last_code': 200,
     'rtt': 0.000412, 'calls': 12, 'failures': 0},
    {'index': 1, 'uri': 'sip:10.0.1.11:5060', 'state': 'IP', 'status': 'inactive', 'probing': True, 'pinned': False, 'flags': 9,
     'priority': 0, 'attrs': 'weight=50', 'weight': 50, 'probing_count': 2, 'last_ping': 1795989615.2, 'last_code': 408,
     'rtt': None, 'calls': 0, 'failures': 0, 'a_future_field': 'kept'},
]}]


@pytest.fixture
def sockdir():
    """A short directory for Unix sockets (their paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix='se', dir='/tmp')
    yield path
    shutil.rmtree(path)


@contextlib.contextmanager
def control_socket(path, answer):
    """A router's control socket: reads one command line, records it, sends ``answer`` and closes."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    commands = []

    def serve():
        while True:
            try:
                conn, _addr = server.accept()
            except OSError:
                return
            with conn:
                commands.append(conn.makefile('rb').readline())
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield commands
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


@pytest.fixture
def filled(db, sql):
    sql(db, "INSERT INTO sip_domains VALUES ('acme.example.com', 10, 1, 'acme')")
    sql(db, "INSERT INTO sip_domains VALUES ('off.example.com', 11, 0, NULL)")
    sql(db, "INSERT INTO dispatcher (setid, destination, flags, attrs, description) VALUES (10, 'sip:10.0.1.11:5060', 0, 'weight=50', 'acme')")
    sql(db, "INSERT INTO dispatcher (setid, destination, flags, attrs, description) VALUES (10, 'sip:10.0.1.10:5060', 4, 'weight=50', 'acme')")
    return db


def info(db, sock, **args):
    return run_module(sip_edge_info.main, dict({'db': db, 'control_socket': sock}, **args))


def test_rows_without_a_router(filled, sockdir):
    sock = os.path.join(sockdir, 'sipedge.sock')
    result = info(filled, sock)
    assert result['changed'] is False
    assert result['domains'] == [{'domain': 'acme.example.com', 'setid': 10, 'enabled': True, 'comment': 'acme'},
                                 {'domain': 'off.example.com', 'setid': 11, 'enabled': False, 'comment': None}]
    assert [(row['uri'], row['admin_state'], row['weight'], row['live']) for row in result['destinations']] == [
        ('sip:10.0.1.11:5060', 'active', 50, None), ('sip:10.0.1.10:5060', 'disabled', 50, None)]
    assert result['router'] == {'answered': False, 'socket': sock, 'msg': 'no control socket at %s (is sipedge running?)' % sock}


def test_live_state_with_every_router_field(filled, sockdir):
    sock = os.path.join(sockdir, 'sipedge.sock')
    with control_socket(sock, json.dumps(SETS).encode() + b'\n') as commands:
        result = info(filled, sock, _ansible_check_mode=True)
    assert commands == [b'dispatcher list\n']
    assert result['changed'] is False
    assert result['router'] == {'answered': True, 'socket': sock, 'msg': 'the router answered at %s' % sock}
    live = {row['uri']: row['live'] for row in result['destinations']}
    assert live['sip:10.0.1.10:5060'] == dict(SETS[0]['destinations'][0], algorithm=9)
    assert live['sip:10.0.1.11:5060'] == dict(SETS[0]['destinations'][1], algorithm=9)


def test_rows_the_router_has_not_loaded_have_no_live_state(filled, sockdir):
    sock = os.path.join(sockdir, 'sipedge.sock')
    with control_socket(sock, json.dumps([dict(SETS[0], destinations=SETS[0]['destinations'][:1])]).encode()):
        result = info(filled, sock)
    live = {row['uri']: row['live'] for row in result['destinations']}
    assert live['sip:10.0.1.10:5060']['status'] == 'active' and live['sip:10.0.1.11:5060'] is None


def test_an_error_answer_is_reported(filled, sockdir):
    sock = os.path.join(sockdir, 'sipedge.sock')
    with control_socket(sock, b'{"error": "unknown command"}'):
        result = info(filled, sock)
    assert result['router'] == {'answered': False, 'socket': sock, 'msg': 'the router did not answer at %s: unknown command' % sock}
    assert all(row['live'] is None for row in result['destinations'])


def test_a_socket_nobody_listens_on_is_reported(filled, sockdir):
    sock = os.path.join(sockdir, 'sipedge.sock')
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock)  # left over by a router that is gone
    stale.close()
    result = info(filled, sock)
    assert result['router']['answered'] is False
    assert result['router']['msg'].startswith('the router did not answer at %s: ' % sock)
    assert 'refused' in result['router']['msg']


def test_missing_db_and_other_version(tmp_path, db, sql, sockdir):
    sock = os.path.join(sockdir, 'sipedge.sock')
    assert 'no such routing DB' in info(str(tmp_path / 'none.db'), sock)['msg']
    assert not os.path.exists(tmp_path / 'none.db')
    sql(db, 'PRAGMA user_version = 1')
    assert 'schema version 1, the modules need version 2' in info(db, sock)['msg']
