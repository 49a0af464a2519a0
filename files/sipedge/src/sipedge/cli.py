"""The `sipedge` command: run, check-config, db init, db version, ctl."""

import argparse
import json
import logging
import sys

from . import __version__, config, control, manager, schema
from .net import StartupError
from .route import NOTICE
from .store import StoreError

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": NOTICE,
          "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level):
    """One line per event on stderr; journald adds the time stamp."""
    logging.addLevelName(NOTICE, "NOTICE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger("sipedge")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    root.propagate = False


def cmd_run(args):
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print("%s: %s" % (args.config, exc), file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    try:
        return manager.run(cfg)
    except (StoreError, StartupError, OSError) as exc:
        logging.getLogger("sipedge").error("cannot start: %s", exc)
        return 1


def cmd_check_config(args):
    try:
        config.load(args.file)
    except config.ConfigError as exc:
        print("%s: %s" % (args.file, exc), file=sys.stderr)
        return 2
    print("%s: ok" % args.file)
    return 0


def cmd_db(args):
    """`db init` creates or migrates the schema; `db version` reads it."""
    action = schema.ensure_schema if args.db_command == "init" else schema.read_version
    try:
        print(action(args.db))
    except (schema.SchemaError, StoreError) as exc:
        print("%s: %s" % (args.db, exc), file=sys.stderr)
        return 1
    return 0


def cmd_ctl(args):
    """Ask the running edge through its control socket (one answer for all workers)."""
    path = args.socket
    if path is None:
        try:
            path = config.load(args.config).control_socket
        except config.ConfigError as exc:
            print("%s: %s" % (args.config, exc), file=sys.stderr)
            return 2
    words = args.words
    try:
        answer = control.ask(path, words)
    except control.ControlError as exc:
        print("sipedge ctl: %s" % exc, file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if args.json else control.format_answer(words, answer))
    return 0


def parser():
    top = argparse.ArgumentParser(prog="sipedge", description=__doc__)
    top.add_argument("--version", action="version", version="sipedge " + __version__)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the edge router in the foreground")
    run.add_argument("--config", required=True, help="path of sipedge.toml")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)
    db = sub.add_parser("db", help="routing DB schema")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    init = dbsub.add_parser("init", help="create or migrate the routing DB")
    init.add_argument("--db", required=True)
    init.set_defaults(func=cmd_db)
    version = dbsub.add_parser("version", help="print the schema version")
    version.add_argument("--db", required=True)
    version.set_defaults(func=cmd_db)
    ctl = sub.add_parser("ctl", help="ask the running edge: stats, dispatcher list, "
                                     "dispatcher set-state SET URI active|inactive|disabled, reload")
    where = ctl.add_mutually_exclusive_group()
    where.add_argument("--config", default="/etc/sipedge/sipedge.toml", help="read the socket path from this config")
    where.add_argument("--socket", help="the control socket path")
    ctl.add_argument("--json", action="store_true", help="the answer as JSON, for tools")
    ctl.add_argument("words", nargs="+", metavar="COMMAND", help="stats | dispatcher list | "
                     "dispatcher set-state SET URI STATE | reload")
    ctl.set_defaults(func=cmd_ctl)
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    return args.func(args)
