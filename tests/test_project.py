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
