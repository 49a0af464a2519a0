"""Kamailio reference router for the test suites (see reference.py).

Import with ``tests/`` on sys.path::

    from kamailio.reference import Kamailio, prepare_db, render_config
"""
