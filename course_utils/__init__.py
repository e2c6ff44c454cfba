"""Helpers for lesson 3 of a practical deep learning course: the data block chain, a Learner with
one-cycle training, and the vision models the lesson uses. Import from the subpackages:
`course_utils.vision`, `course_utils.learner`, `course_utils.metrics`."""
__version__ = "0.1.0"
