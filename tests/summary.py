#!/usr/bin/env python3
"""Count what a test run did, from JUnit XML files (stdlib only).

    summary.py [--extra FILE] RESULTS_DIR
        Prints passed/failed/skipped per *.xml file in RESULTS_DIR, then the
        lines of FILE (one result per line: "PASS name", "FAIL name: why" or
        "SKIP name"), then the total as its last line:
            N passed, N failed[, N skipped]
        Exits 0 only when something passed and nothing failed.

        With CI=true in the environment a run proves what it claims or fails:
        a skipped case not matched by an entry of tests/skips.allow counts as
        a failure, and so does a results file with no test case at all (a
        suite that collected nothing). Elsewhere both are reported, not failed.

    summary.py --failures FILE.xml
        Prints how many test cases in FILE.xml failed (0 if it is missing).

    summary.py --meson-junit BUILD_DIR OUT.xml
        Copies BUILD_DIR/meson-logs/testlog.junit.xml to OUT.xml and marks the
        verdicts meson's JUnit file leaves out, taken from testlog.json: a plain
        test that timed out or passed unexpectedly is written there as a pass,
        and a TAP test that crashed after its last "ok" shows only passes.
"""

import argparse
import fnmatch
import json
import os
import sys
import xml.etree.ElementTree as ET

BAD_MESON_RESULTS = {"FAIL", "ERROR", "TIMEOUT", "UNEXPECTEDPASS", "INTERRUPT"}
ALLOW_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "skips.allow")


def ci_mode():
    return os.environ.get("CI") == "true"


def read_allow_list(path=ALLOW_FILE):
    """The patterns of tests/skips.allow: one "STEP:CLASSNAME::NAME" glob a line, each
    under a comment saying why that skip is no hole in the run. An entry without its
    comment is refused (ValueError): an allow-list nobody explained is a silent skip."""
    patterns = []
    if not os.path.exists(path):
        return patterns
    explained = False
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                explained = False
            elif line.startswith("#"):
                explained = True
            elif not explained:
                raise ValueError(f"{path}:{number}: entry without a comment saying why: {line}")
            else:
                patterns.append(line)
    return patterns


def skip_allowed(patterns, step, case_id):
    return any(fnmatch.fnmatchcase(f"{step}:{case_id}", p) for p in patterns)


class Counts:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []  # names of failed cases, for the report

    def add(self, other):
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped

    def text(self):
        line = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            line += f", {self.skipped} skipped"
        return line


def case_verdict(case):
    """'failed', 'skipped' or 'passed' for one <testcase>."""
    tags = {child.tag for child in case}
    if tags & {"failure", "error"}:
        return "failed"
    if "skipped" in tags:
        return "skipped"
    return "passed"


def skip_reason(case):
    for skipped in case.findall("skipped"):
        return (skipped.get("message") or skipped.text or "").strip()
    return ""


def count_xml(path, strict=False, allowed=()):
    """Counts the test cases of one JUnit file; an unreadable file is one failure. When
    `strict`, a skip no pattern of `allowed` matches and an empty file are failures."""
    counts = Counts()
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        counts.failed = 1
        counts.failures.append(f"(cannot read {os.path.basename(path)}: {exc})")
        return counts
    step = os.path.basename(path)[:-len(".xml")]
    cases = 0
    for case in root.iter("testcase"):
        cases += 1
        verdict = case_verdict(case)
        name = case.get("name", "?")
        classname = case.get("classname")
        case_id = f"{classname}::{name}" if classname else name
        if verdict == "skipped" and strict and not skip_allowed(allowed, step, case_id):
            counts.failed += 1
            counts.failures.append(f"{case_id} (skipped, not in tests/skips.allow: "
                                   f"{skip_reason(case)[:200]})")
        elif verdict == "failed":
            counts.failed += 1
            counts.failures.append(case_id)
        elif verdict == "skipped":
            counts.skipped += 1
        else:
            counts.passed += 1
    if cases == 0 and strict:
        counts.failed += 1
        counts.failures.append("(no test case at all: the suite collected nothing)")
    return counts


def count_extra(path, out, strict=False):
    """Counts PASS/FAIL/SKIP lines of the plain results file and echoes them; when
    `strict`, a SKIP line is a failure (a step that could not run proved nothing)."""
    counts = Counts()
    if not path or not os.path.exists(path):
        return counts
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            word = line.split(None, 1)[0].rstrip(":").upper()
            if word in ("PASS", "PASSED", "OK"):
                counts.passed += 1
            elif word in ("SKIP", "SKIPPED") and not strict:
                counts.skipped += 1
            else:  # FAIL, or anything we cannot read, is a failure
                counts.failed += 1
            out.write(f"  {line}\n")
    return counts


def summarize(results_dir, extra, out=sys.stdout, strict=False):
    total = Counts()
    allowed = []
    if strict:
        try:
            allowed = read_allow_list()
        except ValueError as exc:
            out.write(f"  FAIL {exc}\n")
            total.failed += 1
    files = []
    if os.path.isdir(results_dir):
        files = sorted(f for f in os.listdir(results_dir) if f.endswith(".xml"))
    width = max([len(f) for f in files] + [10])
    out.write("test results:\n")
    for name in files:
        counts = count_xml(os.path.join(results_dir, name), strict, allowed)
        line = f"  {name:<{width}}  {counts.passed:5d} ok  {counts.failed:5d} bad"
        if counts.skipped:
            line += f"  {counts.skipped:5d} skip"
        out.write(line + "\n")
        for failure in counts.failures[:20]:
            out.write(f"      FAILED {failure}\n")
        if len(counts.failures) > 20:
            out.write(f"      ... and {len(counts.failures) - 20} more\n")
        total.add(counts)
    total.add(count_extra(extra, out, strict))
    if total.passed + total.failed == 0:
        out.write("no test ran\n")
    out.write(total.text() + "\n")
    out.flush()
    return 0 if total.passed > 0 and total.failed == 0 else 1


def meson_junit(build_dir, out_path):
    """Writes meson's JUnit file with the verdicts it dropped put back."""
    logs = os.path.join(build_dir, "meson-logs")
    junit = os.path.join(logs, "testlog.junit.xml")
    if os.path.exists(junit):
        tree = ET.parse(junit)
    else:
        tree = ET.ElementTree(ET.Element("testsuites"))
    root = tree.getroot()
    bad = []
    try:
        with open(os.path.join(logs, "testlog.json"), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    entry = json.loads(line)
                    if entry.get("result") in BAD_MESON_RESULTS:
                        bad.append(entry)
    except FileNotFoundError:
        pass
    suites = list(root.iter("testsuite"))
    for entry in bad:
        name = entry.get("name", "?")
        why = f"meson: {entry.get('result')} (exit status {entry.get('returncode')})"
        # A test with subtests (TAP) has a suite of its own named PROJECT.NAME.
        own = [s for s in suites if s.get("name", "").endswith("." + name)]
        plain = [c for s in suites for c in s.findall("testcase")
                 if c.get("name") == name and s not in own]
        if plain:
            for case in plain:
                if case_verdict(case) != "failed":
                    for skipped in case.findall("skipped"):
                        case.remove(skipped)
                    ET.SubElement(case, "failure", message=why).text = why
            continue
        if own and any(case_verdict(c) == "failed" for s in own for c in s.iter("testcase")):
            continue
        suite = own[0] if own else ET.SubElement(root, "testsuite", name="meson")
        case = ET.SubElement(suite, "testcase", name=f"{name} (whole test)",
                             classname=suite.get("name", "meson"))
        ET.SubElement(case, "failure", message=why).text = why
    tree.write(out_path, encoding="utf-8", xml_declaration=True)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra", help="plain file of PASS/FAIL/SKIP lines")
    parser.add_argument("--failures", metavar="XML", help="print failed cases in XML")
    parser.add_argument("--meson-junit", nargs=2, metavar=("BUILD_DIR", "OUT"))
    parser.add_argument("results_dir", nargs="?")
    args = parser.parse_args(argv)
    if args.failures:
        print(count_xml(args.failures).failed if os.path.exists(args.failures) else 0)
        return 0
    if args.meson_junit:
        meson_junit(*args.meson_junit)
        return 0
    if not args.results_dir:
        parser.error("RESULTS_DIR is required")
    return summarize(args.results_dir, args.extra, strict=ci_mode())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
