"""The README's C++ snippet compiles against the public headers as written (it once called
get_state(h, c) on names it never declared)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def eigen_include_dir():
    """Eigen's headers where CMake would find them: the cmeel-eigen wheel, else the system's."""
    candidates = [Path(p) / "cmeel.prefix" / "include" / "eigen3" for p in sys.path if p]
    candidates += [Path("/usr/include/eigen3"), Path("/usr/local/include/eigen3")]
    return next((c for c in candidates if (c / "Eigen" / "Core").is_file()), None)


def readme_cpp_snippets():
    return re.findall(r"```cpp\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def as_program(snippet):
    """The snippet's #include lines at file scope, its statements in main()."""
    lines = snippet.splitlines()
    includes = [line for line in lines if line.startswith("#include")]
    body = [line for line in lines if not line.startswith("#include")]
    return "\n".join(includes) + "\nint main() {\n" + "\n".join(body) + "\n  return 0;\n}\n"


def test_the_readme_has_a_cpp_snippet():
    assert readme_cpp_snippets(), "README.md: no ```cpp block found"


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None, reason="no C++ compiler")
@pytest.mark.skipif(eigen_include_dir() is None, reason="Eigen 3.4 headers not found (cmeel-eigen or system)")
@pytest.mark.parametrize("index", range(len(readme_cpp_snippets())))
def test_readme_cpp_snippet_compiles(tmp_path, index):
    source = tmp_path / f"snippet{index}.cpp"
    source.write_text(as_program(readme_cpp_snippets()[index]), encoding="utf-8")
    result = subprocess.run(
        [os.environ.get("CXX", "c++"), "-std=c++17", "-fsyntax-only", f"-I{ROOT / 'cpp' / 'include'}",
         f"-I{eigen_include_dir()}", str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, source.read_text() + result.stderr[-3000:]
