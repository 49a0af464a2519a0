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

SETS = [{'setid': 10, 'algorithm': 9, 'destinations': [
    {'index': 0, 'uri': 'sip:10.0.1.10:5060', 'state': 'AP', 'flags': 8, 'priority': 0, 'attrs': 'weight=50', 'weight': 50,
     'probing_count': 0, 'last_ping': 1764451200.5},
    {'index': 1, 'uri': 'sip:10.0.1.11:5060', 'state': 'IP', 'flags': 9, 'priority': 0, 'attrs': 'weight=50', 'weight': 50,
     'probing_count': 2},
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
        ('sip:10.0.1.11:5060', 'active', 50, []), ('sip:10.0.1.10:5060', 'disabled', 50, [])]
    assert result['router'] == {'answered': False, 'sockets': [], 'errors': [],
                                'msg': 'no control socket at %s (is sipedge running?)' % sock}


def test_live_state_in_words_and_every_router_field(filled, sockdir):
    sock = os.path.join(sockdir, 'sipedge.sock')
    with control_socket(sock, json.dumps(SETS).encode() + b'\n') as commands:
        result = info(filled, sock, _ansible_check_mode=True)
    assert commands == [b'dispatcher\n']
    assert result['changed'] is False
    assert result['router'] == {'answered': True, 'sockets': [sock], 'errors': [], 'msg': '1 router process(es) answered'}
    live = {row['uri']: row['live'] for row in result['destinations']}
    assert live['sip:10.0.1.10:5060'] == [dict(SETS[0]['destinations'][0], socket=sock, algorithm=9, status='active', probing=True)]
    assert live['sip:10.0.1.11:5060'][0]['status'] == 'inactive'
    assert live['sip:10.0.1.11:5060'][0]['probing_count'] == 2


def test_one_socket_per_worker_process(filled, sockdir):
    base = os.path.join(sockdir, 'sipedge.sock')
    trying = [dict(SETS[0], destinations=[dict(SETS[0]['destinations'][0], state='TX')])]
    with control_socket(base + '.101', json.dumps(SETS).encode()), control_socket(base + '.102', json.dumps(trying).encode()):
        result = info(filled, base)
    assert result['router']['sockets'] == [base + '.101', base + '.102']
    live = {row['uri']: row['live'] for row in result['destinations']}
    assert [(entry['socket'], entry['status'], entry['probing']) for entry in live['sip:10.0.1.10:5060']] == [
        (base + '.101', 'active', True), (base + '.102', 'trying', False)]
    assert len(live['sip:10.0.1.11:5060']) == 1


def test_a_socket_that_does_not_answer_is_reported(filled, sockdir):
    base = os.path.join(sockdir, 'sipedge.sock')
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(base + '.7')  # left over by a process that is gone: nobody accepts
    stale.close()
    with control_socket(base + '.8', b'{"error": "unknown command"}'):
        result = info(filled, base)
    assert result['router']['answered'] is False
    assert result['router']['msg'] == 'no router process answered at %s' % base
    assert [error.split(':')[0] for error in result['router']['errors']] == [base + '.7', base + '.8']
    assert all(row['live'] == [] for row in result['destinations'])


def test_missing_db_and_other_version(tmp_path, db, sql, sockdir):
    sock = os.path.join(sockdir, 'sipedge.sock')
    assert 'no such routing DB' in info(str(tmp_path / 'none.db'), sock)['msg']
    assert not os.path.exists(tmp_path / 'none.db')
    sql(db, 'PRAGMA user_version = 1')
    assert 'schema version 1, the modules need version 2' in info(db, sock)['msg']
