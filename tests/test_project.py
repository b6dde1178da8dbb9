"""The project's own promises: dependency lists in step, CI runs the README's test command."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def names(lines):
    return {re.split(r"[<>=! ]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}


def test_environment_yml_lists_the_same_packages_as_pyproject():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = names(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = [line.strip()[2:] for line in (ROOT / "environment.yml").read_text().splitlines()
           if line.startswith("      - ")]
    assert names(env) == wanted


def test_ci_runs_the_readme_test_command():
    # The commands a new user copies: the fenced block under "## Two commands", one per line.
    block = (ROOT / "README.md").read_text().split("## Two commands", 1)[1].split("```")[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make report", "make test"]
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == commands[1]


def test_notebooks_are_committed_without_outputs():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            assert "id" in cell, f"{path.name}: a cell without an id (nbformat 4.5 wants one)"
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, path.name


def test_the_python_we_promise_is_the_python_the_code_is_written_for():
    import ast
    import sys
    import tomllib
    promised = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert promised == ">=3.11"
    assert "  - python>=3.11" in (ROOT / "environment.yml").read_text().splitlines()
    for doc in ("README.md", "Makefile"):
        assert "Python 3.11+" in (ROOT / doc).read_text(), doc
    assert sys.version_info >= (3, 11)
    for path in [*ROOT.glob("labkit/*.py"), *ROOT.glob("tests/*.py")]:  # no syntax newer than promised
        ast.parse(path.read_text(), str(path), feature_version=(3, 11))


def test_without_apt_get_the_optional_tools_are_one_line_and_make_goes_on(tmp_path):
    """An offline machine, or a distribution without a chromium package: apt-get fails, and make
    says so in one line and goes on (xelatex and Chromium are optional)."""
    import os
    import shutil
    import subprocess
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "apt-get"
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package chromium' >&2\nexit 100\n")
    fake.chmod(0o755)
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")  # as root, so that make tries apt-get
    (bin_dir / "id").chmod(0o755)
    out = subprocess.run([shutil.which("make"), "-s", "-C", str(ROOT), "system"], capture_output=True, text=True,
                         env=dict(os.environ, PATH=str(bin_dir)), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        "[labkit] no xelatex, pandoc or chromium, and apt-get cannot install them here: HTML report only, "
        "browser tests skipped"]
