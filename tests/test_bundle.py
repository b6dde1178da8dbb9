"""The offline bundle follows dependencies through wheel metadata, extras and markers included,
and stops at what the GPU machine has."""
import zipfile

from labkit import bundle as B


def fake_wheel(folder, name, requires):
    path = folder / f"{name}-1.0-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-1.0.dist-info/METADATA", meta)
    return path


def test_bundle_follows_metadata_extras_and_markers_and_stops_at_the_image(tmp_path, monkeypatch):
    index = tmp_path / "index"
    index.mkdir()
    graph = {
        "papermill": ["nbclient>=0.2", "torch", "old-backport; python_version < '3.0'",
                      "aiohttp; python_version >= '3.12'"],
        "nbclient": ["bleach[css]!=5.0.0", "numpy"],
        "bleach": ["webencodings", "tinycss2; extra == 'css'"],
        "tinycss2": ["webencodings>=0.4"],
        "webencodings": [], "aiohttp": [], "old-backport": [],
    }
    for name, requires in graph.items():
        fake_wheel(index, name, requires)
    fetched = []

    def download(specs, dest, python):
        for spec in specs:
            name = B.normalize(spec.split(">")[0].split("!")[0].split("=")[0].split("<")[0])
            fetched.append(name)
            (dest / f"{name}-1.0-py3-none-any.whl").write_bytes((index / f"{name}-1.0-py3-none-any.whl").read_bytes())
    monkeypatch.setattr(B, "download", download)
    monkeypatch.setattr(B, "NEEDS", ("papermill",))
    names, _, line = B.bundle(tmp_path / "out", "3.11")
    assert names == ["bleach", "nbclient", "papermill", "tinycss2", "webencodings"]  # no torch, numpy, markers off
    assert len(fetched) == len(set(fetched))  # each package fetched once
    assert "--no-index --no-deps" in line and (tmp_path / "out" / "install.sh").read_text().strip().endswith(line)
    names312, _, _ = B.bundle(tmp_path / "out", "3.12")
    assert set(names312) - set(names) == {"aiohttp"}


def test_have_reads_pip_freeze_and_pip_list(tmp_path):
    (tmp_path / "freeze.txt").write_text("Torch==2.11.0\nnumpy @ file:///x\n# comment\n")
    (tmp_path / "list.txt").write_text("Package    Version\n---------- -------\nJinja2     3.1.6\n")
    assert B.read_have(tmp_path / "freeze.txt") == {"torch", "numpy"}
    assert B.read_have(tmp_path / "list.txt") == {"jinja2"}
