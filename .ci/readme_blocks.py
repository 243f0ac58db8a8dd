"""Prints the README's bash blocks that are marked to be run by CI (a line `<!-- run by .ci/run -->`
just before the fence), in order, as one script: .ci/run runs it, so those commands are tested
exactly as a reader would type them.

    python .ci/readme_blocks.py README.md > script.sh
"""

import re
import sys
from pathlib import Path

MARKER = "<!-- run by .ci/run -->"


def marked_blocks(text):
    return re.findall(r"^" + re.escape(MARKER) + r"\n```bash\n(.*?)^```$", text, flags=re.S | re.M)


def main():
    path = Path(sys.argv[1])
    blocks = marked_blocks(path.read_text(encoding="utf-8"))
    if not blocks:
        sys.exit(f"{path}: no bash block marked {MARKER}")
    if len(blocks) != path.read_text(encoding="utf-8").count(MARKER):
        sys.exit(f"{path}: a {MARKER} line that is not just before a ```bash fence")
    print("".join(blocks), end="")


if __name__ == "__main__":
    main()
