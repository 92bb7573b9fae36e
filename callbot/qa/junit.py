"""A QA verdict as JUnit XML, one test case per check, for CI systems."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from callbot.qa.verdict import Check


def junit_xml(checks: list[Check], *, suite: str, seconds: float) -> str:
    """The checks as a JUnit ``testsuites`` document."""
    failures = sum(1 for c in checks if c.passed is False)
    skipped = sum(1 for c in checks if c.passed is None)
    root = ET.Element("testsuites", name="callbot-qa")
    node = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{seconds:.3f}",
    )
    for check in checks:
        case = ET.SubElement(
            node, "testcase", classname=f"{suite}.{check.name}", name=check.subject
        )
        if check.passed is False:
            failure = ET.SubElement(
                case, "failure", message=check.describe(), type="threshold"
            )
            failure.text = check.describe()
        elif check.passed is None:
            ET.SubElement(case, "skipped", message=check.describe())
        else:
            out = ET.SubElement(case, "system-out")
            out.text = check.describe()
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
