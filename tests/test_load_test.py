"""tools/load_test.py: the web app's load test runs end to end against a real server and prints its table."""
import sys
from pathlib import Path

from kinds import make_learner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import load_test  # noqa: E402  (tools/ is not a package)


def test_the_load_test_serves_measures_and_compares(tmp_path, capsys):
    learn, image = make_learner("multi-label", tmp_path)
    code = load_test.main([str(learn.export()), str(image), "-n", "6", "--concurrency", "1", "3", "--compare"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if line.startswith(("batched", "one at a time"))]
    assert [(r[0], r[-9]) for r in rows] == [("batched", "1"), ("batched", "3"), ("one", "1"), ("one", "3")]
    assert all(r[-7] == "0" for r in rows), out  # no errors
    assert "POST /predict" in out and "req/s" in out
