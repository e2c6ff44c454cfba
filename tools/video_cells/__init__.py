"""The lesson-3 video's notebook cells, one module per lesson, as `tools/video_check.py` runs them.

The format of a lesson module is described at the top of `tools/video_check.py`."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Skip:
    """A cell the harness does not run (a download, a shell command), with the reason; counted as skipped."""
    why: str
