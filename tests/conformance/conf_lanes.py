"""Start the two lanes: Kamailio (reference, seed config) and sipedge (subject).

Addresses (all loopback, chosen to stay clear of other suites):
    reference: Kamailio 127.43.75.10 (alg 4, the seed) and 127.43.75.12 (alg 8),
               client 127.43.75.11, backends 127.43.76.N
    subject:   sipedge 127.43.75.20, client 127.43.75.21, backends 127.43.77.N
Router ports are free ports picked at start; backends bind port 0.
"""
from __future__ import annotations

import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
for p in (str(HERE), str(TESTS), str(REPO / "files" / "sipedge")):   # the last: testsupport
    if p not in sys.path:
        sys.path.insert(0, p)

from kamailio.reference import Kamailio, prepare_db  # noqa: E402
from testsupport.edge import Sipedge  # noqa: E402
from testsupport.net import free_udp_port  # noqa: E402

import conf_routing  # noqa: E402
from conf_cases import CASES  # noqa: E402
from conf_harness import Ctx, Lane, Router  # noqa: E402

REF = dict(router="127.43.75.10", router8="127.43.75.12", client="127.43.75.11", backends="127.43.76")
SUB = dict(router="127.43.75.20", client="127.43.75.21", backends="127.43.77")


def _resolver(lane: Lane):
    def resolve(name: str) -> str:
        if name.startswith("dead:"):
            return lane.dead_uri(int(name.split(":")[1]))
        return lane.backends[name].uri
    return resolve


# ------------------------------------------------------------------ lanes

class Setup:
    """Both lanes, started; ``close()`` stops everything this object started."""

    def __init__(self, workdir: Path, *, with_sipedge: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kams: list[Kamailio] = []
        self.sipedge: Sipedge | None = None
        self.ref: Lane | None = None
        self.sub: Lane | None = None
        try:
            self._start_reference()
            if with_sipedge:
                self._start_subject()
        except BaseException:
            self.close()
            raise

    def _start_reference(self) -> None:
        lane = Lane("kamailio", REF["client"], REF["backends"], conf_routing.BACKENDS)
        self.ref = lane
        db = self.workdir / "kamailio-routing.db"
        if db.exists():
            db.unlink()
        conf_routing.create_seed_db(db, _resolver(lane))
        prepare_db(db)
        k = Kamailio(REF["router"], free_udp_port(REF["router"]), db, self.workdir, name="kamailio")
        k8 = Kamailio(REF["router8"], free_udp_port(REF["router8"]), db, self.workdir,
                      name="kamailio-alg8", algorithm=8)
        for inst in (k, k8):
            self.kams.append(inst)
            inst.start()
        lane.add_router("main", Router(k.listen_addr, k.listen_port))
        lane.add_router("alg8", Router(k8.listen_addr, k8.listen_port))

    def _start_subject(self) -> None:
        lane = Lane("sipedge", SUB["client"], SUB["backends"], conf_routing.BACKENDS)
        self.sub = lane
        domains, destinations = conf_routing.rows(_resolver(lane))
        alg8 = {str(s): 8 for s in conf_routing.ALG8_SETS}
        # The seed has no failure_route: compared with it, sipedge answers as it does.
        self.sipedge = Sipedge(self.workdir, SUB["router"], domains=domains, destinations=destinations,
                               settings={"dispatcher": {"set_algorithms": alg8, "failover": False},
                                         "log": {"level": "info"}})
        self.sipedge.start()
        r = Router(SUB["router"], self.sipedge.port)
        lane.add_router("main", r)
        lane.add_router("alg8", r)

    def close(self) -> None:
        if self.sipedge:
            self.sipedge.stop()
        for k in self.kams:
            k.stop()
        for lane in (self.ref, self.sub):
            if lane:
                lane.close()


def run_lane(lane: Lane, names: list[str]) -> dict[str, list]:
    out: dict[str, list] = {}
    for name in names:
        stage, desc, fn = CASES[name]
        ctx = Ctx(lane, name)
        try:
            fn(ctx)
            out[name] = ctx.steps
        except Exception:  # noqa: BLE001 - recorded as the outcome
            out[name] = [{"error": traceback.format_exc(limit=3)}]
        finally:
            ctx.close()
    return out


def run_both(setup: Setup, names: list[str] | None = None) -> tuple[dict, dict | None]:
    names = names or list(CASES)
    lanes = [setup.ref] + ([setup.sub] if setup.sub else [])
    with ThreadPoolExecutor(len(lanes)) as ex:
        futs = [ex.submit(run_lane, lane, names) for lane in lanes]
        results = [f.result() for f in futs]
    return results[0], (results[1] if len(results) > 1 else None)
