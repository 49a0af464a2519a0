# Copyright: Contributors to the voip.sip_edge project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The option every routing DB module shares, and what they all do with the DB."""

from __future__ import annotations


class ModuleDocFragment:
    """voip.sip_edge.routing_db"""

    DOCUMENTATION = r'''
options:
  db:
    description:
      - Path of the router's routing DB (SQLite) on the managed node.
      - The DB must exist at the schema version these modules know (2);
        the router role creates and migrates it with C(sipedge db init).
        The modules never create or migrate it and fail on a missing file or another schema version.
      - Set it once for all modules of this collection with
        C(module_defaults) and the action group C(group/voip.sip_edge.sip_edge).
    type: path
    default: /var/lib/sipedge/routing.db
attributes:
  action_group:
    description: Use C(group/voip.sip_edge.sip_edge) in C(module_defaults) to set defaults (such as O(db)) for this module.
    support: full
    membership:
      - voip.sip_edge.sip_edge
notes:
  - The router reads the DB while a module writes to it (WAL journal mode); a module waits up to 30 seconds
    for another writer. The router picks up a committed change within about a second, without a restart.
  - In check mode the DB is opened read-only.
  - When the module runs as root, SQLite gives the C(-wal) and C(-shm) files it creates the owner of the DB file,
    so the router (user C(sipedge)) keeps access to them.
requirements:
  - Python 3.11 or newer on the managed node (its standard library C(sqlite3) module).
'''
