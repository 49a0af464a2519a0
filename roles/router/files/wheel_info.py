"""What the router role needs to know about the wheels it installs (runs on the controller).

    python wheel_info.py DIR      the wheels built into DIR (every DIR/*.whl)
    python wheel_info.py -        the wheels given on stdin as JSON, [{"path": ..., "sha256": ...}],
                                  each checked against its sha256

Prints one JSON document:

    {"wheels": [{"path": ..., "sha256": ...}],   sorted by file name, as sip_edge_router_wheels takes them
     "names": [file name, ...],
     "sipedge": path of the sipedge wheel,
     "fingerprint": one "<content digest>  <file name>" line per wheel}

The content digest covers what a wheel installs (every file, and the name, version and
requirements from METADATA) but not the build tool's own marks (WHEEL, RECORD, metadata
version): the same sources rebuilt by a newer setuptools give the same fingerprint, so the
nodes do not reinstall and restart. The role records the fingerprint on the node at install.

Exits 1 with one line on stderr when a wheel is missing, a sha256 differs, or there is not
exactly one sipedge wheel. Standard library only.
"""

import glob
import hashlib
import json
import os
import sys
import zipfile

KEEP = ("Name", "Version", "Requires-Dist", "Requires-Python")


def content_digest(path):
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            data = archive.read(name)
            if ".dist-info/" in name:
                base = name.rsplit("/", 1)[-1]
                if base in ("RECORD", "WHEEL"):
                    continue
                if base == "METADATA":
                    data = "\n".join(line for line in data.decode("utf-8").splitlines()
                                     if line.split(":", 1)[0] in KEEP).encode()
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(given):
    """given: [{"path", "sha256" or None}] -> the JSON document (raises ValueError)."""
    wheels = []
    for wheel in given:
        path = wheel["path"]
        if not os.path.isfile(path):
            raise ValueError("%s: no such wheel on the controller" % path)
        sha256 = file_sha256(path)
        expected = (wheel.get("sha256") or "").strip().lower()
        if wheel.get("sha256") is not None and sha256 != expected:
            raise ValueError("%s: sha256 is %s, expected %s: not installing it" % (path, sha256, expected))
        wheels.append({"path": path, "sha256": sha256, "name": os.path.basename(path), "digest": content_digest(path)})
    wheels.sort(key=lambda wheel: wheel["name"])
    routers = [wheel["path"] for wheel in wheels if wheel["name"].startswith("sipedge-")]
    if len(routers) != 1:
        raise ValueError("expected exactly one sipedge-*.whl among the wheels, got %s" % [w["name"] for w in wheels])
    return {
        "wheels": [{"path": wheel["path"], "sha256": wheel["sha256"]} for wheel in wheels],
        "names": [wheel["name"] for wheel in wheels],
        "sipedge": routers[0],
        "fingerprint": "".join("%s  %s\n" % (wheel["digest"], wheel["name"]) for wheel in wheels),
    }


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    if argv[1] == "-":
        given = json.load(sys.stdin)
    else:
        given = [{"path": path, "sha256": None} for path in sorted(glob.glob(os.path.join(argv[1], "*.whl")))]
    try:
        print(json.dumps(describe(given)))
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        sys.stderr.write("wheel_info: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
