"""Config validation: defaults are the seed's; every bad value is named."""

import pytest

from sipedge import cli
from sipedge.config import ConfigError, Listen, from_dict, load


def test_defaults_are_the_seeds_values():
    cfg = from_dict({})
    assert cfg.listen == (Listen("udp", "0.0.0.0", 5060),)
    assert (cfg.max_forwards, cfg.max_forwards_limit) == (10, 70)
    assert (cfg.fr_timer, cfg.fr_inv_timer) == (5.0, 30.0)
    assert cfg.algorithm == 4
    assert cfg.allowed_methods == ("REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS")
    assert cfg.scanner_user_agents == ("sipvicious", "friendly-scanner", "sipcli", "nmap")
    assert (cfg.ping_interval, cfg.probing_threshold, cfg.inactive_threshold) == (30.0, 2, 2)
    assert cfg.priority_order == "lowest-first"
    assert cfg.log_level == "info"


def test_ipv6_and_several_listeners():
    cfg = from_dict({"sip": {"listen": ["udp:127.0.0.1:5060", "udp:[::1]:5070"]}})
    assert cfg.listen[1] == Listen("udp", "::1", 5070)
    assert str(cfg.listen[1]) == "udp:[::1]:5070"


@pytest.mark.parametrize("data,message", [
    ({"timers": {"fr_timer": -1}}, "timers.fr_timer: must be >= 0.001 (got -1)"),
    ({"timers": {"fr_inv_timer": "30"}}, "timers.fr_inv_timer: must be of type float (got '30')"),
    ({"timers": {"t1": 5, "t2": 4}}, "timers.t2: must be >= t1 (got 4)"),
    ({"sip": {"listen": ["tcp:127.0.0.1:5060"]}}, "sip.listen: each entry must be udp:IP:PORT"),
    ({"sip": {"listen": ["udp:example.com:5060"]}}, "sip.listen: each entry must be udp:IP:PORT"),
    ({"sip": {"listen": ["udp:127.0.0.1:70000"]}}, "sip.listen: each entry must be udp:IP:PORT"),
    ({"sip": {"max_forwards": 256}}, "sip.max_forwards: must be between 0 and 255 (got 256)"),
    ({"sip": {"allowed_methods": ["invite"]}}, "sip.allowed_methods: must be upper-case method names"),
    ({"sip": {"options_answer_networks": ["10.0.0.0/33"]}}, "sip.options_answer_networks: each entry must be"),
    ({"sip": {"workers": 0}}, "sip.workers: must be between 1 and 64 (got 0)"),
    ({"dispatcher": {"algorithm": 5}}, "dispatcher.algorithm: must be one of 0, 1, 2, 3, 4, 6, 8, 9 (got 5)"),
    ({"dispatcher": {"set_algorithms": {"10": 7}}}, "dispatcher.set_algorithms: values must be one of"),
    ({"dispatcher": {"priority_order": "highest"}}, "dispatcher.priority_order: must be one of lowest-first, kamailio"),
    ({"dispatcher": {"ping_reply_codes": [99]}}, "dispatcher.ping_reply_codes: must be a list of SIP status codes"),
    ({"dispatcher": {"probing_threshold": 0}}, "dispatcher.probing_threshold: must be >= 1 (got 0)"),
    ({"log": {"level": "loud"}}, "log.level: must be one of debug, info, notice, warning, error (got 'loud')"),
    ({"database": {"path": ""}}, "database.path: must not be empty"),
    ({"sip": {"lisen": []}}, "sip.lisen: unknown setting"),
    ({"sipp": {}}, "sipp: unknown section"),
    ({"sip": {"max_forwards": True}}, "sip.max_forwards: must be of type int (got True)"),
])
def test_bad_values_are_named(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    assert str(err.value).startswith(message)


def test_check_config_command(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('[timers]\nfr_timer = 2\n')
    assert cli.main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[timers]\nfr_timer = -5\n')
    assert cli.main(["check-config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == "%s: timers.fr_timer: must be >= 0.001 (got -5)" % bad


def test_unreadable_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[sip\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(broken)


def test_db_commands(tmp_path, capsys):
    db = str(tmp_path / "routing.db")
    assert cli.main(["db", "init", "--db", db]) == 0
    assert cli.main(["db", "init", "--db", db]) == 0
    assert cli.main(["db", "version", "--db", db]) == 0
    assert capsys.readouterr().out.split() == ["created", "up", "to", "date", "2"]


def test_run_with_missing_db_is_a_clear_start_error(tmp_path, capsys):
    cfg = tmp_path / "sipedge.toml"
    cfg.write_text('[sip]\nlisten = ["udp:127.0.0.1:0"]\n[database]\npath = "%s"\n' % (tmp_path / "none.db"))
    assert cli.main(["run", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR cannot start: ") and "none.db" in err
