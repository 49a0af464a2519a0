"""Test support shared by the router's tests (files/sipedge/tests), the conformance
suite (tests/conformance) and the benchmark (files/sipedge/bench).

- ``sip``: SIP text, parsed and built on its own (never with the router's
  ``sipedge.message``, so that a test does not trust the code it tests).
- ``net``: free loopback ports, bound-port checks, a loopback-only network namespace.
- ``procs``: processes started and stopped by their PID, bounded polling, /proc facts.
- ``routing``: rows of the routing DB (domains, destinations).
- ``edge``: a ``sipedge run`` process with its config, DB and log.

The package lives beside ``src/``, not in it: the router's wheel (setuptools
``packages.find where=["src"]``) does not ship it.  Users put ``files/sipedge`` on
``sys.path``: pytest's ``pythonpath`` in files/sipedge/pyproject.toml for the router's
tests, the path lists of tests/conformance/conftest.py and conf_lanes.py, bench.py and
fuzz_run.py (run as scripts) themselves.
"""
