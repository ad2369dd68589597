"""The bAbI reader: a story written here, bad lines, data roots, offline."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyg_rbp.data import DatasetNotFoundError, load_babi, parse_babi
from pyg_rbp.data.babi import babi_splits
from tests.conftest import shared_data_root

needs_babi = pytest.mark.skipif(
    shared_data_root() is None or
    not (shared_data_root() / "bAbI" / "processed_1").is_dir(),
    reason="../shared/data/bAbI not found")

# Task 16 form: node 1 is-a 2, node 3 is-a 2, node 3 has-colour 4; asked
# about node 1 (answer 4), and a second question on the same story.
STORY = """1 2 2
3 2 2
3 1 4
? 1 1 4
? 1 3 4

5 1 6
? 1 5 6
"""


def test_story_edges_both_directions_with_reverse_types() -> None:
    examples = parse_babi(STORY, task=16, num_edge_types=2)
    assert len(examples) == 3  # one example per question
    d = examples[0]
    assert d.num_nodes == 4
    # forward edges first (0-based ids, file type - 1), then the reverses
    # with type + k
    assert d.edge_index.tolist() == [[0, 2, 2, 1, 1, 3],
                                     [1, 1, 3, 0, 2, 2]]
    assert d.edge_type.tolist() == [1, 1, 0, 3, 3, 2]
    assert d.x.shape == (4, 1)
    assert d.x.view(-1).tolist() == [1.0, 0.0, 0.0, 0.0]  # question node 1
    assert d.y.tolist() == [3]  # the answer's index within the graph
    assert int(d.question_type) == 1
    assert examples[1].x.view(-1).tolist() == [0.0, 0.0, 1.0, 0.0]
    # the second story is a graph of its own: ids 5, 6 -> 6 nodes
    assert examples[2].num_nodes == 6 and examples[2].y.tolist() == [5]
    assert examples[2].edge_index.tolist() == [[4, 5], [5, 4]]


def test_graph_and_path_targets() -> None:
    (g, ) = parse_babi("1 1 2\n2 1 3\n? 1 1 3 2\n", task=18,
                       num_edge_types=1)
    assert g.x.tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    assert g.y.tolist() == [1]  # label 2 (false) -> class 1
    (p, ) = parse_babi("1 3 2\n2 1 3\n? 1 1 3 3 1\n", task=19,
                       num_edge_types=4)
    assert p.y.tolist() == [[2, 0]]  # both directions, 0-based
    assert p.edge_type.tolist() == [2, 0, 6, 4]


@pytest.mark.parametrize("text, task, match", [
    ("1 1 x\n? 1 1 2\n", 16, r"line 1: expected integers"),
    ("1 1 2\n? 1 1\n", 16, r"line 2: a task-16 question has 3 integers"),
    ("1 1 2\n? 1 1 2 1\n", 16, r"line 2: a task-16 question has 3"),
    ("1 1 2\n? 1 1 2 1\n", 19, r"line 2: a task-19 question has 5"),
    ("1 1 2 3\n? 1 1 2\n", 16, r"line 1: an edge line is 'src edge_type"),
    ("1 3 2\n? 1 1 2\n", 16, r"line 1: edge type 3 is above the task's 2"),
    ("1 1 2\n? 1 1 2\n3 1 2\n", 16, r"line 3: an edge line after"),
    ("1 1 2\n? 1 1 7\n", 16, r"line 2: answer node 7 is not in the story"),
    ("0 1 2\n? 1 1 2\n", 16, r"line 1: ids are 1-based"),
    ("? 1 1 2\n", 16, r"line 1: a question on a story without edges"),
    ("1 1 2\n? 1 1 2 3\n", 18, r"line 2: task 18's label is 1"),
])
def test_malformed_lines_name_file_and_line(text: str, task: int,
                                            match: str) -> None:
    with pytest.raises(ValueError, match=r"stories\.txt, " + match):
        parse_babi(text, task=task, num_edge_types=2, path="stories.txt")


def test_bad_task_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'task' must be one of"):
        parse_babi(STORY, task=3, num_edge_types=2)


def _write_task(root: Path, fold: int, split: str, text: str) -> None:
    folder = root / "bAbI" / f"processed_{fold}" / split
    folder.mkdir(parents=True)
    (folder / "16_graphs.txt").write_text(text)
    (folder / "16_edge_types.txt").write_text("has_color=1\nis=2\n")


def test_data_root_argument_and_environment(tmp_path, cache_dir,
                                            monkeypatch) -> None:
    _write_task(tmp_path, 3, "train", STORY)
    task = load_babi(16, 3, "train", str(tmp_path), download=False)
    assert task.num_edge_types == 4 and task.output == "node"
    assert len(task.examples) == 3 and task.annotation_size == 1
    monkeypatch.setenv("PYG_RBP_DATA_ROOT", str(tmp_path))
    assert len(load_babi(16, 3, "train", download=False).examples) == 3


def test_read_only_root_is_read_in_place(tmp_path, cache_dir) -> None:
    _write_task(tmp_path, 1, "train", STORY)
    for path in sorted(tmp_path.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        task = load_babi(16, 1, "train", str(tmp_path), download=False)
        assert len(task.examples) == 3
        assert not cache_dir.exists()  # nothing copied or written
    finally:
        for path in tmp_path.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_offline_error_names_files_and_option(tmp_path, cache_dir) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_babi(16, 2, "test", str(tmp_path), download=False)
    text = str(info.value)
    assert "16_graphs.txt" in text and "16_edge_types.txt" in text
    assert "processed_2/test" in text and "--data-root" in text
    assert "PYG_RBP_DATA_ROOT" in text


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"'fold' must be in 1..10"):
        load_babi(16, 11, download=False)
    with pytest.raises(ValueError, match=r"'split' must be one of"):
        load_babi(16, 1, "dev", download=False)


@needs_babi
def test_shared_files_and_the_papers_protocol() -> None:
    root = str(shared_data_root())
    task = load_babi(4, 1, "train", root, download=False)
    assert len(task.examples) == 1000 and task.num_edge_types == 4
    assert task.question_types() == [1, 2, 3, 4]
    train, val, test, info = babi_splits(4, 1, 2, 50, 50, root, False)
    assert len(train) == 50 and len(val) == 50
    assert all(int(d.question_type) == 2 for d in train + val + test)
    assert len(test) == len(load_babi(4, 1, "test", root, False).of_type(2))
    path = load_babi(19, 1, "test", root, download=False)
    assert path.num_edge_types == 8 and path.num_classes == 4
    assert path.examples[0].y.shape == (1, 2)
    with pytest.raises(ValueError, match=r"at most 254 \(got 250 \+ 50\)"):
        babi_splits(4, 1, 1, 250, 50, root, False)
