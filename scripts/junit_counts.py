"""Print "PASSED FAILED SKIPPED" counted over the test cases of JUnit XML files.

Usage: python junit_counts.py [--failed LIST] FILE.xml...
A test case with a <failure> or <error> child failed, one with <skipped> was
skipped, any other passed. Unreadable files count as one failure each.
With --failed, each failed case is appended to LIST as one line, its name and
the first line of its message, so that the end of 'make test' can say which.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def count(paths: list[str]) -> tuple[int, int, int, list[str]]:
    """Return (passed, failed, skipped, one line per failure) over all test cases in the files."""
    passed = failed = skipped = 0
    failures = []
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as ex:
            failures.append('%s: %s' % (path, ex))
            failed += 1
            continue
        for case in root.iter('testcase'):
            bad = [child for child in case if child.tag in ('failure', 'error')]
            if bad:
                failed += 1
                message = (bad[0].get('message') or bad[0].text or '').strip().split('\n')[0]
                failures.append('%s::%s: %s' % (case.get('classname'), case.get('name'), message[:200]))
            elif any(child.tag == 'skipped' for child in case):
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped, failures


def main(argv: list[str]) -> None:
    listing = None
    if argv[:1] == ['--failed']:
        listing, argv = argv[1], argv[2:]
    passed, failed, skipped, failures = count(argv)
    for line in failures:
        print(line, file=sys.stderr)
    if listing and failures:
        with open(listing, 'a', encoding='utf-8') as out:
            out.write(''.join(line + '\n' for line in failures))
    print('%d %d %d' % (passed, failed, skipped))


if __name__ == '__main__':
    main(sys.argv[1:])
