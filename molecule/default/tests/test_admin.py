"""The admin endpoint as converge configured it (one user): /metrics and
/dispatcher behind HTTP Basic credentials checked against the htpasswd file."""

import json

from conftest import SERVICE, VENV, journal_count

URL = "http://127.0.0.1:9060"
USER, PASSWORD = "prometheus", "molecule-scrape-secret"
HTPASSWD = "/etc/sipedge/admin.htpasswd"

# Scrape from inside the node with the router's own venv: urllib for HTTP, and
# prometheus_client's parser (shipped as a wheel with the router) for the text format.
_SCRAPE = r"""
import base64, json, sys, urllib.error, urllib.request
from prometheus_client.parser import text_string_to_metric_families
url, auth = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url)
if auth:
    request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
try:
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read().decode()
        status, headers = answer.status, dict(answer.headers)
except urllib.error.HTTPError as exc:
    body, status, headers = exc.read().decode(), exc.code, dict(exc.headers)
families = {}
if status == 200 and url.endswith("/metrics"):
    families = {f.name: [[s.labels, s.value] for s in f.samples] for f in text_string_to_metric_families(body)}
print(json.dumps({"status": status, "headers": headers, "families": families,
                  "body": body if url.endswith("/dispatcher") else ""}))
"""


def scrape(host, path, auth=""):
    return json.loads(host.check_output("%s/bin/python -c %s %s %s", VENV, _SCRAPE, URL + path, auth))


def test_without_or_with_wrong_credentials_401(host):
    before = journal_count(host, "admin endpoint: 401 for 127.0.0.1")
    for auth in ("", USER + ":wrong", "nobody:" + PASSWORD):
        answer = scrape(host, "/metrics", auth)
        assert answer["status"] == 401
        assert answer["headers"].get("WWW-Authenticate") == 'Basic realm="sipedge"'
        assert answer["families"] == {}
    assert journal_count(host, "admin endpoint: 401 for 127.0.0.1") >= before + 3


def test_scrape_with_credentials(host):
    answer = scrape(host, "/metrics", USER + ":" + PASSWORD)
    assert answer["status"] == 200
    families = answer["families"]
    for name in ("sipedge_requests_received", "sipedge_replies_sent", "sipedge_drops", "sipedge_failovers",
                 "sipedge_overload_sheds", "sipedge_transactions_active", "sipedge_calls_routed",
                 "sipedge_destination_state"):
        assert name in families, sorted(families)


def test_dispatcher_json(host):
    answer = scrape(host, "/dispatcher", USER + ":" + PASSWORD)
    assert answer["status"] == 200
    assert isinstance(json.loads(answer["body"]), list)


def test_users_file_is_hashed_and_private(host):
    users = host.file(HTPASSWD)
    assert (users.user, users.group, users.mode) == ("root", "sipedge", 0o640)
    content = users.content_string
    assert content.startswith(USER + ":$6$rounds=656000$") and PASSWORD not in content


def test_endpoint_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:9060").is_listening
    assert not host.socket("tcp://0.0.0.0:9060").is_listening


def test_service_unit_waits_for_readiness(host):
    props = host.service(SERVICE).systemd_properties
    assert props["Type"] == "notify" and props["NotifyAccess"] == "main"
