"""problems: problem messages filed by kind, and the grouped list one error shows."""
from __future__ import annotations


def test_a_long_problem_list_shows_the_first_few_of_each_kind():
    from course_utils.data_block import problem_list
    found = [f"Image {i}.jpg does not exist." for i in range(50)] + ["Cannot read image x.jpg: truncated."]
    text = problem_list(found)
    assert "files that do not exist (50):" in text and "... and 45 more" in text and "x.jpg" in text
    assert len(text.splitlines()) == 9


def test_problem_kind_files_a_message_by_the_words_it_uses():
    from course_utils.problems import problem_kind

    assert problem_kind("a.jpg does not exist") == "files that do not exist"
    assert problem_kind("cannot decode b.png") == "files that cannot be read"
    assert problem_kind("the mask of c.png has 3 channels") == "masks"
    assert problem_kind("the label of row 4 is empty") == "labels"
    assert problem_kind("something else") == "other problems"


def test_problems_of_one_kind_are_a_plain_list_of_the_first_twenty():
    from course_utils.problems import problem_list

    text = problem_list([f"f{i}.jpg does not exist" for i in range(23)])
    assert text.splitlines()[0] == "  - f0.jpg does not exist"
    assert text.splitlines()[-1] == "  ... and 3 more" and len(text.splitlines()) == 21
