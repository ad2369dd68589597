"""The symbolic bAbI tasks of Gated Graph Neural Networks (Li et al., 2016).

Tasks 4 (two-argument relations), 15 (basic deduction), 16 (basic induction),
18 (size reasoning) and 19 (path finding), as the official GGNN preprocessing
writes them: ``<root>/bAbI/processed_<fold>/<split>/<T>_graphs.txt``, folds
1 to 10, splits ``train`` and ``test``. A story is a block of edge lines
``src type dst`` (1-based ids) followed by question lines starting with
``?``; a blank line ends it. Each question is one example on its story's
graph:

=====  ==========================================  =========================
task   question line                               target
=====  ==========================================  =========================
4 15   ``? qtype node answer``                     the answer node
16
18     ``? qtype node_a node_b label``             label (1 true, 2 false)
19     ``? qtype node_a node_b dir_1 dir_2``        the two path directions
=====  ==========================================  =========================

Each example becomes a PyG :class:`~torch_geometric.data.Data`:

* ``x`` ``[N, S]``: the annotation, one one-hot column per question slot
  (``S = 1`` for tasks 4, 15, 16; ``S = 2`` for 18 and 19);
* ``edge_index`` ``[2, 2E]``: every edge in both directions;
* ``edge_type`` ``[2E]``: the file's type ``t`` (0-based) for the forward
  direction and ``t + k`` for its reverse, ``k`` the task's number of edge
  types, so the model sees ``2k`` types;
* ``y``: the answer node's index within its graph (tasks 4, 15, 16), the
  class (0 true, 1 false; task 18), or ``[1, 2]`` with the two directions
  (0-based; task 19);
* ``question_type`` (1-based, as in the file).

``N`` is the largest node id named by the story's edges or the question.

Where the files come from: ``data_root``, then ``$PYG_RBP_DATA_ROOT``, then
the user cache (:mod:`pyg_rbp.data.root`). Nothing is written beside the
files (they are parsed in memory in milliseconds), so a read-only root is
read in place. Missing files are downloaded, when ``download=True``, from the
copy of the official preprocessing in github.com/chingyaoc/ggnn.pytorch
(``babi_data/``), else one :class:`DatasetNotFoundError` names them.
"""
from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch_geometric.data import Data

from .._checks import check_choice, check_int
from .root import (PathLike, cache_root, download_timeout, missing_files,
                   not_found_message, resolve_data_root, DatasetNotFoundError)

#: The tasks GGNN's preprocessing provides.
BABI_TASKS = (4, 15, 16, 18, 19)
#: What each task asks for: a node, a graph label, or a two-step path.
BABI_OUTPUTS: Dict[int, str] = {4: "node", 15: "node", 16: "node",
                                18: "graph", 19: "path"}
#: Folds of the preprocessing (1-based, as its folder names).
BABI_FOLDS = tuple(range(1, 11))
BABI_SPLITS = ("train", "test")
#: Where ``download=True`` fetches missing files from.
BABI_URL = ("https://raw.githubusercontent.com/chingyaoc/ggnn.pytorch/"
            "master/babi_data/processed_{fold}/{split}/{name}")

# Integers after '?': question type, question nodes, target entries.
_SLOTS = {"node": 1, "graph": 2, "path": 2}
_TARGETS = {"node": 1, "graph": 1, "path": 2}


@dataclass
class BabiTask:
    """The examples of one task, fold and split, and what describes them.

    Attributes:
        task: The bAbI task number.
        output: ``'node'``, ``'graph'`` or ``'path'`` (see
            :data:`BABI_OUTPUTS`).
        examples: One :class:`Data` per question, in file order.
        num_edge_types: Types the model sees: twice the file's types (each
            reverse direction is a type of its own).
        num_classes: Classes of the graph-level target (2 for task 18, 4
            directions for task 19; 0 for node selection).
        annotation_size: Question slots, the width of ``x``.
    """

    task: int
    output: str
    examples: List[Data]
    num_edge_types: int
    num_classes: int
    annotation_size: int

    def question_types(self) -> List[int]:
        """The question types present, sorted."""
        return sorted({int(d.question_type) for d in self.examples})

    def of_type(self, question_type: int) -> List[Data]:
        """The examples of one question type, in file order."""
        return [d for d in self.examples
                if int(d.question_type) == question_type]


def babi_files(task: int) -> List[str]:
    """The files of a task that the reader needs (in each split folder)."""
    return [f"{task}_graphs.txt", f"{task}_edge_types.txt"]


def _split_dir(root: Path, fold: int, split: str) -> Path:
    return root / "bAbI" / f"processed_{fold}" / split


def _ints(path: Path, lineno: int, fields: Sequence[str]) -> List[int]:
    try:
        values = [int(v) for v in fields]
    except ValueError:
        raise ValueError(f"{path}, line {lineno}: expected integers "
                         f"(got {' '.join(fields)!r})") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{path}, line {lineno}: ids are 1-based, so every "
                         f"value must be >= 1 (got {' '.join(fields)!r})")
    return values


def _count_types(path: Path) -> int:
    """Distinct ids in a ``name=id`` symbol file."""
    ids = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.rpartition("=")
        if not sep or not name:
            raise ValueError(f"{path}, line {lineno}: expected 'name=id' "
                             f"(got {line!r})")
        ids.update(_ints(path, lineno, [value]))
    if not ids:
        raise ValueError(f"{path}: no edge types in the file")
    return max(ids)


def parse_babi(text: str, task: int, num_edge_types: int,
               path: PathLike = "<string>") -> List[Data]:
    """Parse the contents of a ``<T>_graphs.txt`` file (see the module
    docstring for the format and the ``Data`` fields).

    Args:
        text: The file's contents.
        task: The task number (one of :data:`BABI_TASKS`): it fixes the
            question line's layout.
        num_edge_types: The file's edge types ``k`` (reverse directions get
            ``k`` more).
        path: Named in error messages.

    Raises:
        ValueError: A malformed line; the message names the file and the
            line number.
    """
    check_int("task", task, 1)
    if task not in BABI_TASKS:
        raise ValueError(f"'task' must be one of {BABI_TASKS} (got {task})")
    check_int("num_edge_types", num_edge_types, 1)
    path = Path(path)
    output = BABI_OUTPUTS[task]
    slots, targets = _SLOTS[output], _TARGETS[output]
    examples: List[Data] = []
    edges: List[Tuple[int, int, int]] = []
    questions: List[Tuple[int, List[int]]] = []

    def close_story() -> None:
        if questions and not edges:
            raise ValueError(f"{path}, line {questions[0][0]}: a question "
                             f"on a story without edges")
        for lineno, q in questions:
            examples.append(_example(path, lineno, task, output, edges, q,
                                     slots, num_edge_types))
        edges.clear()
        questions.clear()

    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            close_story()
            continue
        if fields[0] == "?":
            want = 1 + slots + targets
            if len(fields) - 1 != want:
                raise ValueError(
                    f"{path}, line {lineno}: a task-{task} question has "
                    f"{want} integers after '?' (question type, {slots} "
                    f"node(s), {targets} target(s)) (got {len(fields) - 1})")
            questions.append((lineno, _ints(path, lineno, fields[1:])))
            continue
        if questions:
            raise ValueError(f"{path}, line {lineno}: an edge line after "
                             f"the story's questions (a blank line must "
                             f"separate stories)")
        if len(fields) != 3:
            raise ValueError(f"{path}, line {lineno}: an edge line is "
                             f"'src edge_type dst' (got {line.strip()!r})")
        src, etype, dst = _ints(path, lineno, fields)
        if etype > num_edge_types:
            raise ValueError(f"{path}, line {lineno}: edge type {etype} is "
                             f"above the task's {num_edge_types} types")
        edges.append((src, etype, dst))
    close_story()
    return examples


def _example(path: Path, lineno: int, task: int, output: str,
             edges: List[Tuple[int, int, int]], question: List[int],
             slots: int, k: int) -> Data:
    qtype, nodes, target = question[0], question[1:1 + slots], \
        question[1 + slots:]
    num_nodes = max(max(max(s, d) for s, _, d in edges), max(nodes))
    e = torch.tensor(edges, dtype=torch.long) - 1  # 0-based
    src, etype, dst = e[:, 0], e[:, 1], e[:, 2]
    edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    edge_type = torch.cat([etype, etype + k])
    x = torch.zeros(num_nodes, slots)
    for slot, node in enumerate(nodes):
        x[node - 1, slot] = 1.0
    if output == "node":
        answer = target[0]
        if answer > num_nodes:
            raise ValueError(f"{path}, line {lineno}: answer node {answer} "
                             f"is not in the story (nodes 1..{num_nodes})")
        y = torch.tensor([answer - 1])
    elif output == "graph":
        if target[0] > 2:
            raise ValueError(f"{path}, line {lineno}: task {task}'s label is "
                             f"1 (true) or 2 (false) (got {target[0]})")
        y = torch.tensor([target[0] - 1])
    else:
        if max(target) > 4:
            raise ValueError(f"{path}, line {lineno}: task {task}'s "
                             f"directions are 1..4 (got {target})")
        y = torch.tensor([target]) - 1
    return Data(x=x, edge_index=edge_index, edge_type=edge_type, y=y,
                question_type=torch.tensor([qtype]), num_nodes=num_nodes)


def _download(folder: Path, fold: int, split: str,
              names: Sequence[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with download_timeout():
        for name in names:
            url = BABI_URL.format(fold=fold, split=split, name=name)
            with urllib.request.urlopen(url) as response:  # noqa: S310
                data = response.read()
            (folder / name).write_bytes(data)


def load_babi(task: int, fold: int = 1, split: str = "train",
              data_root: Optional[PathLike] = None,
              download: bool = True) -> BabiTask:
    """Read one task, fold and split.

    Args:
        task: One of :data:`BABI_TASKS`.
        fold: 1 to 10 (the preprocessing's folder numbers).
        split: ``'train'`` or ``'test'``.
        data_root: The data root (see :mod:`pyg_rbp.data.root`); files are
            read from ``<root>/bAbI/processed_<fold>/<split>/``.
        download: Whether to fetch missing files (into the user cache when
            the root is read-only).

    Raises:
        pyg_rbp.data.DatasetNotFoundError: Files are missing and could not be
            downloaded; the message names them and the option to set.
        ValueError: A bad argument, or a malformed line (file and line
            number named).
    """
    check_int("task", task, 1)
    if task not in BABI_TASKS:
        raise ValueError(f"'task' must be one of {BABI_TASKS} (got {task})")
    check_int("fold", fold, 1)
    if fold not in BABI_FOLDS:
        raise ValueError(f"'fold' must be in 1..10 (got {fold})")
    check_choice("split", split, BABI_SPLITS)
    root = resolve_data_root(data_root)
    folder = _split_dir(root, fold, split)
    names = babi_files(task)
    missing = missing_files(folder, names)
    if missing:
        cached = _split_dir(cache_root(), fold, split)
        if cached != folder and not missing_files(cached, names):
            folder, missing = cached, []
    if missing:
        if not download:
            raise DatasetNotFoundError(not_found_message(
                f"bAbI task {task}", folder, missing,
                "Downloading is switched off."))
        target = folder
        try:
            target.mkdir(parents=True, exist_ok=True)
            probe = target / ".pyg_rbp_probe"
            probe.touch()
            probe.unlink()
        except OSError:
            target = _split_dir(cache_root(), fold, split)
        try:
            _download(target, fold, split, missing)
        except Exception as exc:  # network errors come in many types
            raise DatasetNotFoundError(not_found_message(
                f"bAbI task {task}", folder, missing,
                f"Downloading them failed ({type(exc).__name__}: {exc}).")
            ) from None
        folder = target
    k = _count_types(folder / f"{task}_edge_types.txt")
    graphs = folder / f"{task}_graphs.txt"
    examples = parse_babi(graphs.read_text(), task, k, graphs)
    output = BABI_OUTPUTS[task]
    classes = {"node": 0, "graph": 2, "path": 4}[output]
    return BabiTask(task, output, examples, 2 * k, classes, _SLOTS[output])


def babi_splits(task: int, fold: int, question_type: int,
                train_examples: int = 50, val_examples: int = 50,
                data_root: Optional[PathLike] = None,
                download: bool = True
                ) -> Tuple[List[Data], List[Data], List[Data], BabiTask]:
    """The paper's protocol for one model: ``(train, val, test, task_info)``.

    Train: the first ``train_examples`` questions of ``question_type`` in the
    fold's training file; validation: the next ``val_examples`` there; test:
    every question of that type in the fold's test file.
    """
    check_int("train_examples", train_examples, 1)
    check_int("val_examples", val_examples, 1)
    train_task = load_babi(task, fold, "train", data_root, download)
    test_task = load_babi(task, fold, "test", data_root, download)
    pool = train_task.of_type(question_type)
    if not pool:
        raise ValueError(f"bAbI task {task} has no question type "
                         f"{question_type} (types: "
                         f"{train_task.question_types()})")
    if len(pool) < train_examples + val_examples:
        raise ValueError(
            f"bAbI task {task}, question type {question_type}: "
            f"train_examples + val_examples must be at most {len(pool)} "
            f"(got {train_examples} + {val_examples})")
    train = pool[:train_examples]
    val = pool[train_examples:train_examples + val_examples]
    test = test_task.of_type(question_type)
    return train, val, test, train_task
