"""Every environment variable the package and its tools read is read in course_utils/config.py, and every
COURSE_* variable is documented in README.md."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from course_utils.config import dist_timeout

ROOT = Path(__file__).resolve().parent.parent

# Variables other programs set, read where they are used: torchrun's, in distributed.py.
READ_ELSEWHERE = {"course_utils/distributed.py": {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"}}

READS = [re.compile(p) for p in (r"os\.environ\.get\(\s*[\"'](\w+)[\"']", r"os\.getenv\(\s*[\"'](\w+)[\"']",
                                 r"os\.environ\[\s*[\"'](\w+)[\"']\s*\](?!\s*=[^=])",
                                 r"[\"'](\w+)[\"']\s+(?:not\s+)?in\s+os\.environ\b")]


def _reads(f: Path) -> set[str]:
    text = f.read_text(encoding="utf-8")
    return {m.group(1) for pattern in READS for m in pattern.finditer(text)}


def test_environment_variables_are_read_in_config_only():
    stray = {}
    for f in sorted([*(ROOT / "course_utils").rglob("*.py"), *(ROOT / "tools").glob("*.py")]):
        name = f.relative_to(ROOT).as_posix()
        if name == "course_utils/config.py":
            continue
        left = _reads(f) - READ_ELSEWHERE.get(name, set())
        if left:
            stray[name] = sorted(left)
    assert stray == {}, "read these through a function in course_utils/config.py"


def test_every_course_variable_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Environment variables"):]
    table = table[:table.find("\n## ", 1)]
    used = set()
    for f in [*(ROOT / "course_utils").rglob("*.py"), *(ROOT / "tools").glob("*.py"), ROOT / "tests" / "conftest.py"]:
        used |= set(re.findall(r"\bCOURSE_[A-Z_]+[A-Z]\b", f.read_text(encoding="utf-8")))
    assert "COURSE_CACHE" in used
    assert sorted(v for v in used if f"| `{v}`" not in table) == []


def test_the_distributed_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("COURSE_DIST_TIMEOUT", raising=False)
    assert dist_timeout(600) == 600.0
    monkeypatch.setenv("COURSE_DIST_TIMEOUT", "12.5")
    assert dist_timeout(600) == 12.5
    monkeypatch.setenv("COURSE_DIST_TIMEOUT", "ten")
    with pytest.raises(ValueError, match="COURSE_DIST_TIMEOUT must be a number of seconds, not 'ten'"):
        dist_timeout(600)
