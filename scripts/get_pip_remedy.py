"""Offline stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test downloads get-pip from a host that may be unreachable and caches it
as ~/.ansible/test/cache/get_pip_<version>.py; scripts/setup.sh copies this file
there when that download fails. ansible-test runs it inside each fresh venv as
``python get_pip_X_Y.py [pip options] pip==X.Y [--no-setuptools] [--no-wheel]``.
It installs pip with ensurepip, then the requested pip from the package index.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main(args: list[str]) -> int:
    """Bootstrap pip into the running interpreter; return an exit code."""
    no_setuptools = '--no-setuptools' in args
    options = [arg for arg in args if arg not in ('--no-setuptools', '--no-wheel')]
    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ)
    if env.get('PIP_CONFIG_FILE') == os.devnull:
        # ensurepip points pip at /dev/null; pip would then lose the machine's CA settings.
        del env['PIP_CONFIG_FILE']
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet'] + options, check=True, env=env)
    if no_setuptools:
        subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet', 'setuptools'], check=False, env=env)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
