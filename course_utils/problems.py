"""The report of what would stop training: each problem the data checks find is one message naming its item (file,
row, mask, ...); `problem_list` groups them by kind, so one error names every problem of the data at once.
"""
from __future__ import annotations

from collections.abc import Sequence

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

# Kinds of problem found before training, each recognised by words its messages use, in the order listed.
_PROBLEM_KINDS = (("files that do not exist", ("does not exist", "do not exist", "no such file")),
                  ("files that cannot be read", ("cannot read", "cannot decode", "cannot identify")),
                  ("masks", ("mask",)), ("points", ("point",)), ("boxes", ("box",)),
                  ("labels", ("label", "class")))


def problem_kind(message: str) -> str:
    """The kind of a problem message (see `_PROBLEM_KINDS`): what a grouped report files it under."""
    low = message.lower()
    return next((kind for kind, words in _PROBLEM_KINDS if any(w in low for w in words)), "other problems")


def problem_list(problems: Sequence[str], shown: int = 5) -> str:
    """Problem messages as indented lines: all of one kind as a plain list (the first 20), several kinds grouped,
    each with its count and its first `shown` messages, so a long list of one kind cannot hide the others."""
    groups: dict[str, list[str]] = {}
    for p in problems:
        groups.setdefault(problem_kind(p), []).append(p)
    if len(groups) == 1:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        return "\n".join(f"  - {p}" for p in problems[:20]) + more
    order = [k for k, _ in _PROBLEM_KINDS] + ["other problems"]
    lines = []
    for kind in sorted(groups, key=order.index):
        found = groups[kind]
        lines.append(f"  {kind} ({len(found)}):")
        lines.extend(f"    - {p}" for p in found[:shown])
        if len(found) > shown:
            lines.append(f"    ... and {len(found) - shown} more")
    return "\n".join(lines)
