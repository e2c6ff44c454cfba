"""Helpers for lesson 3 of a practical deep learning course: the data block chain, a Learner with
one-cycle training, and the vision models the lesson uses. Import from the subpackages:
`course_utils.vision`, `course_utils.learner`, `course_utils.metrics`."""

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name
__version__ = "0.1.0"
