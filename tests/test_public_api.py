"""The advertised surface: every course_utils module has an `__all__`, and each name in it is one a student or a
caller meets: imported by a notebook or a solutions/ file, named in course_utils/all.py (the lesson video's
names), imported by the command line (course_utils/__main__.py, which registers train, predict, serve and
finetune), or written in backticks in README.md or a notebook's markdown. Every other name stays importable
by its name, off `__all__`."""
from __future__ import annotations

import ast
import importlib
import json
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_utils"

# Modules whose `__all__` re-exports names defined elsewhere, and where that is documented.
RE_EXPORTS = {
    "course_utils.vision": "the package: `from course_utils.vision import cnn_learner`",
    "course_utils.text": "the package: `from course_utils.text import TextList`; course_utils.all adds its names",
    "course_utils.exercises": "the package docstring: every check is imported from here",
    "course_utils.download": "download_url, extract_archive and the errors, for callers from before the split",
    "course_utils.data_block": "README: every name of the chain imports from `data_block`",
}

# Names kept although nothing above uses them, with the reason.
KEPT = {
    # tests/test_layout.py: `from course_utils.data_block import X` keeps working, and X stays in its __all__,
    # for every X that moved out of data_block into items, labels, databunch and problems.
    "course_utils.data_block": {"ItemList", "TransformConfig", "RENAMED", "TargetList", "CategoryList",
                                "MultiCategoryList", "FloatList", "EmptyLabelList", "DataBunch", "DatasetType",
                                "DeviceDataLoader", "LabelList", "Normalize", "load_data", "decide_auto_cache",
                                "problem_list", "problem_kind"},
}

# What `from course_utils.all import *` gave when the lists were trimmed: it must keep giving all of them.
VIDEO_NAMES = {
    "gc", "os", "re", "partial", "plt", "np", "pd", "torch", "nn", "F", "Path", "ItemList", "LabelList",
    "LabelLists", "DataBunch", "DatasetType", "CategoryList", "MultiCategoryList", "FloatList", "tensor", "URLs",
    "untar_data", "Config", "get_dataset", "ImageList", "ImageItemList", "ImageFileList", "get_image_files",
    "SegmentationItemList", "PointsItemList", "ObjectItemList", "get_transforms", "ResizeMethod", "imagenet_stats",
    "open_image", "open_mask", "Image", "ImageSegment", "ImagePoints", "FlowField", "show_image", "show_mask",
    "show_points", "show_boxes", "plot_multi", "get_annotations", "bb_pad_collate", "biwi_center", "models",
    "cnn_learner", "create_cnn", "unet_learner", "Learner", "load_learner", "lr_find", "unfreeze_slice",
    "gpu_mem_get_free_no_cache", "seed_everything", "accuracy", "error_rate", "accuracy_thresh", "fbeta", "dice",
    "mse", "rmse", "MSELossFlat", "ClassificationInterpretation",
    # added by course_utils.text's __all__
    "TextList", "Text", "TextDataBunch", "TextClasDataBunch", "TextLMDataBunch", "load_data", "LanguageLearner",
    "RNNLearner", "language_model_learner", "text_classifier_learner", "AWD_LSTM", "awd_lstm_clas_config",
    "awd_lstm_lm_config", "SPECIAL_TOKENS", "Tokenizer", "Vocab", "TextFileList", "TextFilesList", "TextSplitData",
}


def module_name(path: Path) -> str:
    """`course_utils/vision/__init__.py` -> `course_utils.vision`."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def module_path(name: str) -> Path:
    """The file of a course_utils module."""
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def declared_all(name: str) -> list[str] | None:
    """The module's `__all__`, read from its source (None when it has none)."""
    for node in ast.parse(module_path(name).read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return list(ast.literal_eval(node.value))
    return None


def defined_names(name: str) -> set[str]:
    """The names a module's own top-level statements define (not the ones it imports)."""
    names = set()
    for node in ast.walk(ast.parse(module_path(name).read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.col_offset == 0:
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.col_offset == 0:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def code_names(sources: list[str]) -> set[str]:
    """Names taken from course_utils by the cells of one notebook (or one file): `from course_utils.x import a`
    gives `a`, and `from course_utils import exercises` then, in any cell, `exercises.check(...)` gives
    `exercises` and `check`."""
    trees = [ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                  for line in source.splitlines())) for source in sources]
    names, modules = set(), set()
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "course_utils":
            for alias in node.names:
                names.add(alias.name)
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("course_utils")}
    for node in (node for tree in trees for node in ast.walk(tree)):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if chain and isinstance(node, ast.Name) and node.id in modules:
            names |= set(chain)
    return names


def backticked(markdown: str) -> set[str]:
    """Every identifier written inside `backticks` (fenced code blocks left out)."""
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.S)
    return {word for span in re.findall(r"`([^`\n]+)`", markdown)
            for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


@cache
def used_names() -> dict[str, str]:
    """Every name the notebooks, solutions/, all.py, the command line and the README use, with where."""
    used: dict[str, str] = {}
    for path in sorted((ROOT / "nbs").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        found = code_names(["".join(c["source"]) for c in cells if c["cell_type"] == "code"])
        found |= {n for c in cells if c["cell_type"] == "markdown" for n in backticked("".join(c["source"]))}
        used.update({n: path.name for n in found if n not in used})
    for path in sorted((ROOT / "solutions").glob("*.py")):
        used.update({n: path.name for n in code_names([path.read_text()]) if n not in used})
    everything = importlib.import_module("course_utils.all")
    video = set(everything.__all__) | {a.name for node in ast.walk(ast.parse(module_path("course_utils.all")
                                                                             .read_text()))
                                       if isinstance(node, ast.ImportFrom) for a in node.names}
    used.update({n: "course_utils/all.py" for n in video if n not in used})
    cli = {a.name for node in ast.parse(module_path("course_utils.__main__").read_text()).body
           if isinstance(node, ast.ImportFrom) and node.level for a in node.names}
    used.update({n: "course_utils/__main__.py" for n in cli if n not in used})
    used.update({n: "README.md" for n in backticked((ROOT / "README.md").read_text()) if n not in used})
    return used


def test_every_module_has_an_all():
    missing = [m for m in MODULES if declared_all(m) is None]
    assert not missing, f"modules without __all__: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_every_listed_name_exists(name):
    module = importlib.import_module(name)
    absent = [n for n in declared_all(name) or [] if not hasattr(module, n)]
    assert not absent, f"{name}.__all__ lists names the module does not have: {absent}"


@pytest.mark.parametrize("name", [m for m in MODULES if m != "course_utils.all"])
def test_every_listed_name_is_used(name):
    """A name in `__all__` is defined in its module (or re-exported where RE_EXPORTS says) and used by a
    notebook, solutions/, all.py, the command line or the README; otherwise it stays off `__all__`."""
    own = defined_names(name)
    for listed in declared_all(name) or []:
        if listed in KEPT.get(name, ()):
            continue
        assert listed in own or name in RE_EXPORTS, \
            f"{name}.__all__ lists {listed!r}, which is defined elsewhere: list it in the module that defines it"
        assert listed in used_names(), (
            f"{name}.__all__ lists {listed!r}, which no notebook, solutions/ file, course_utils/all.py, "
            "course_utils/__main__.py or README backtick uses: take it off __all__ (it stays importable)")


def test_the_video_star_import_still_gives_every_name():
    namespace: dict = {}
    exec("from course_utils.all import *", namespace)
    everything = importlib.import_module("course_utils.all")
    assert VIDEO_NAMES <= set(everything.__all__), sorted(VIDEO_NAMES - set(everything.__all__))
    assert VIDEO_NAMES <= set(namespace), sorted(VIDEO_NAMES - set(namespace))
