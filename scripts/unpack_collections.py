"""Unpack pinned collections from the 'ansible' community wheel.

Usage: python unpack_collections.py REQUIREMENTS_YML WHEEL_DIR DEST

Only the collections named in REQUIREMENTS_YML are taken from the wheel found in
WHEEL_DIR and written to DEST/ansible_collections/<namespace>/<name>; the version
of each must equal the one pinned in REQUIREMENTS_YML.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import zipfile

import yaml


def main(requirements: str, wheel_dir: str, dest: str) -> int:
    """Unpack every pinned collection; return a process exit code."""
    with open(requirements, encoding='utf-8') as handle:
        wanted = yaml.safe_load(handle)['collections']
    wheels = sorted(glob.glob(os.path.join(wheel_dir, 'ansible-*.whl')))
    if not wheels:
        print('no ansible-*.whl in %s' % wheel_dir, file=sys.stderr)
        return 1
    with zipfile.ZipFile(wheels[-1]) as wheel:
        names = wheel.namelist()
        for item in wanted:
            namespace, name = item['name'].split('.')
            prefix = 'ansible_collections/%s/%s/' % (namespace, name)
            manifest = json.loads(wheel.read(prefix + 'MANIFEST.json'))
            version = manifest['collection_info']['version']
            if version != str(item['version']):
                print('%s: wheel has %s, %s pins %s' % (item['name'], version, requirements, item['version']), file=sys.stderr)
                return 1
            wheel.extractall(dest, [n for n in names if n.startswith(prefix)])
            print('%s %s' % (item['name'], version))
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:4]))
