"""Every ```python block in README.md and docs/**/*.md runs.

How the blocks are run: each Markdown file's ```python blocks are executed in
the order they appear, in one namespace per file (a later block may use what an
earlier one defined: a setup block is simply a visible block above the others),
in a fresh temporary working directory (files a block writes, such as
``build/study.sqlite``, land there). A traceback points at the Markdown file
and the line of the block. Other fences (```sh, ```text, ```toml, ...) are not
run.

How a block says it is not run: an HTML comment on the line right above its
fence,

    <!-- not run: needs your own package `mypackage` -->
    ```python

with a reason after ``not run:``. The comment is invisible on GitHub; each such
block is reported as one skipped test whose reason is the comment's text (see
pytest's ``-ra`` summary). Use it only for a block that cannot run anywhere but
in a reader's own project (their files, their package, several processes), never
for a block that is merely broken: fix the block instead, defining the tensors it
needs in it or in a block above it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->\s*$")
MARKER_LIKE = re.compile(r"<!--\s*not[\s_-]*run", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    """One ```python block: its file, the line of its first code line, its code, its mark."""

    path: Path
    line: int
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, ticks, lang = opening["indent"], opening["ticks"], opening["lang"].lower()
        start = i + 1
        end = start
        while end < len(lines) and not re.match(
            rf"^\s*{re.escape(ticks[0])}{{{len(ticks)},}}\s*$", lines[end]
        ):
            end += 1
        if lang == "python":
            code = "\n".join(
                line[len(indent) :] if line.startswith(indent) else line.lstrip()
                for line in lines[start:end]
            )
            above = lines[i - 1] if i > 0 else ""
            mark = NOT_RUN.match(above)
            blocks.append(Block(path, start + 1, code, mark["reason"] if mark else None))
        i = end + 1
    return blocks


BLOCKS = {path: python_blocks(path) for path in FILES}
SKIPPED = [b for blocks in BLOCKS.values() for b in blocks if b.not_run]
RUN_FILES = [p for p, blocks in BLOCKS.items() if any(not b.not_run for b in blocks)]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", RUN_FILES, ids=[_rel(p) for p in RUN_FILES])
def test_python_blocks_of_a_file_run_in_order(path: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": f"docs:{_rel(path)}"}
    for block in BLOCKS[path]:
        if block.not_run:
            continue
        # Pad with blank lines so that a traceback gives the Markdown file's own line number.
        source = "\n" * (block.line - 1) + block.code + "\n"
        try:
            exec(compile(source, str(path), "exec"), namespace)
        except Exception as exc:
            raise AssertionError(
                f"the ```python block at {block.where} fails: {type(exc).__name__}: {exc}"
            ) from exc


@pytest.mark.parametrize("block", SKIPPED, ids=[b.where for b in SKIPPED])
def test_not_run_block_is_reported_with_its_reason(block: Block) -> None:
    compile(block.code, str(block.path), "exec")  # it is still valid Python
    pytest.skip(f"{block.where}: not run: {block.not_run}")


def test_the_snippets_are_found_and_every_mark_is_well_formed() -> None:
    assert BLOCKS[ROOT / "README.md"], "README.md has no ```python block"
    for path in FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not (line.lstrip().startswith("<!--") and MARKER_LIKE.search(line)):
                continue  # prose that merely mentions the mark (in backticks) is not a mark
            assert NOT_RUN.match(line), (
                f"{_rel(path)}:{number}: write the mark as `<!-- not run: <reason> -->`"
            )
            following = lines[number] if number < len(lines) else ""
            assert FENCE.match(following) and "python" in following, (
                f"{_rel(path)}:{number}: a `not run` mark must be the line right above a "
                "```python fence"
            )


def test_the_reader_finds_python_fences_their_lines_and_their_marks(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n"
        "```python\n"
        "a = 1\n"
        "```\n"
        "```sh\n"
        "make test\n"
        "```\n"
        "<!-- not run: needs your own data -->\n"
        "```python\n"
        "load('mine.csv')\n"
        "```\n"
        "- a list item:\n"
        "\n"
        "  ```python\n"
        "  if a:\n"
        "      b = 2\n"
        "  ```\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [(b.line, b.code, b.not_run) for b in blocks] == [
        (3, "a = 1", None),
        (10, "load('mine.csv')", "needs your own data"),
        (15, "if a:\n    b = 2", None),
    ]
