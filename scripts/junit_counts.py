"""Print "PASSED FAILED SKIPPED" counted over the test cases of JUnit XML files.

Usage: python junit_counts.py FILE.xml...
A test case with a <failure> or <error> child failed, one with <skipped> was
skipped, any other passed. Unreadable files count as one failure each.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def count(paths: list[str]) -> tuple[int, int, int]:
    """Return (passed, failed, skipped) over all test cases in the files."""
    passed = failed = skipped = 0
    for path in paths:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as ex:
            print('%s: %s' % (path, ex), file=sys.stderr)
            failed += 1
            continue
        for case in root.iter('testcase'):
            tags = {child.tag for child in case}
            if tags & {'failure', 'error'}:
                failed += 1
            elif 'skipped' in tags:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


if __name__ == '__main__':
    print('%d %d %d' % count(sys.argv[1:]))
