"""Print one set-up command of README.md, so CI runs what the README says.

    python3 .ci/readme_command.py main    # the line under "Run the main job"
    python3 .ci/readme_command.py test    # the line under "Run the tests"

Each command is the one line of the first ```bash block after the paragraph
that starts with those words. Stdlib only: it runs before any venv exists.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

HEADINGS = {"main": "Run the main job", "test": "Run the tests"}


def command(readme: str, which: str) -> str:
    start = readme.find(HEADINGS[which])
    if start < 0:
        raise SystemExit(f"README.md has no paragraph starting "
                         f"{HEADINGS[which]!r}")
    block = re.search(r"```bash\n(.*?)```", readme[start:], re.S)
    if block is None:
        raise SystemExit(f"README.md: no ```bash block after "
                         f"{HEADINGS[which]!r}")
    lines = [ln for ln in block.group(1).splitlines() if ln.strip()]
    if len(lines) != 1:
        raise SystemExit(f"README.md: the block after {HEADINGS[which]!r} "
                         f"must hold one command line (got {len(lines)})")
    return lines[0]


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in HEADINGS:
        raise SystemExit(f"usage: readme_command.py {{{'|'.join(HEADINGS)}}}")
    root = Path(__file__).resolve().parents[1]
    print(command((root / "README.md").read_text(), sys.argv[1]))
