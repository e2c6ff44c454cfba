"""Text names of the video's fastai (v1.0.2x, November 2018) that have no equivalent here.

Each is a placeholder object: calling it, or reading one of its attributes (`TextFileList.from_folder`), raises
an error that says what to type instead, so a student typing along with the video never meets a bare
NameError. `from course_utils.all import *` brings them along (they are in `course_utils.text.__all__`)."""
from __future__ import annotations

__all__ = ["TextFileList", "TextFilesList", "TextSplitData"]


class VideoOnlyName:
    """A name of the video's library with no equivalent here; any use of it says what to type instead."""

    def __init__(self, name: str, instead: str):
        self._name, self._instead = name, instead

    def message(self) -> str:
        """What went wrong and what to type instead."""
        return (f"`{self._name}` is a name of the video's fastai (v1.0.2x) that course_utils does not have; "
                f"type instead: {self._instead}")

    def __call__(self, *args, **kwargs):
        raise TypeError(self.message())

    def __getattr__(self, attr: str):
        if attr.startswith("_"):  # Python's and IPython's own probes (__wrapped__, _repr_html_, ...)
            raise AttributeError(attr)
        raise AttributeError(self.message())

    def __repr__(self) -> str:
        return f"<{self.message()}>"


TextFileList = VideoOnlyName("TextFileList", "TextList.from_folder(path)")
TextFilesList = VideoOnlyName("TextFilesList", "TextList.from_folder(path)")
TextSplitData = VideoOnlyName("TextSplitData", "TextList.from_folder(path).split_by_folder(valid='test') (or "
                                               ".split_by_rand_pct(0.1) for a language model's data)")
