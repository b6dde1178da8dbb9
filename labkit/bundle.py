"""An offline bundle for a GPU machine that has torch but not the notebook stack.

    python -m labkit bundle DIR [--python 3.12] [--zip img_align_celeba.zip] [--have FREEZE.txt]

DIR/wheels holds the wheels the pipeline needs beyond what the GPU machine's Python already
has (for that Python version, manylinux x86-64), DIR/ holds the CelebA source zip if given, and
DIR/install.sh the one install line, which uses DIR alone. Dependencies are followed through
each wheel's metadata and stop at the packages the machine has, so torch and its CUDA
libraries are never fetched.
"""
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from labkit import LabkitError

# What a typical offline GPU image has (ours, the list): the bundle leaves these out.
HAVE = ("torch", "torchvision", "h5py", "numpy", "scipy", "pillow", "matplotlib", "tqdm", "torchmetrics")
# What the pipeline needs beyond them: labkit's dependencies but JupyterLab (interactive only).
NEEDS = ("torch-fidelity", "papermill", "nbclient", "nbformat", "nbconvert", "ipykernel", "jupyter-client", "pyzmq",
         "ipywidgets")
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_24_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64")


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_have(path):
    """Package names from `pip freeze` or `pip list` output of the GPU machine."""
    names = set()
    for line in Path(path).read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if m and not line.lstrip().startswith(("#", "-", "Package")):
            names.add(normalize(m.group(1)))
    return names


def requirements(wheel, python, extra=""):
    """The wheel's dependencies that apply on Linux x86-64 CPython `python`, with `extra`."""
    from packaging.requirements import Requirement
    env = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": extra}
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(zf.read(meta).decode())
    reqs = [Requirement(r) for r in headers.get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def download(specs, dest, python):
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
           "--python-version", python, "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)],
           *specs]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise LabkitError(f"pip download failed for {' '.join(specs)}: {done.stderr.strip().splitlines()[-1]}")


def wheel_name(path):
    return normalize(Path(path).name.split("-")[0])


def bundle(out, python="3.12", zip_path=None, have=None):
    """Fill `out` (see the module's doc); returns (wheel names, total MiB, the install line)."""
    from packaging.requirements import Requirement
    out = Path(out)
    wheels = out / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)  # wheels of another Python version must not stay beside
    wheels.mkdir(parents=True)
    have = set(map(normalize, HAVE)) | (read_have(have) if have else set())
    extras, followed = {}, set()  # the extras asked of each package; (package, extra) already followed
    queue = [Requirement(n) for n in NEEDS]
    while queue:  # breadth first: one pip call per layer of the dependency graph
        fetch = {}
        for req in queue:
            name = normalize(req.name)
            if name in have:
                continue
            if name not in extras:
                fetch.setdefault(name, req)
            extras.setdefault(name, set()).update(req.extras)
        if fetch:
            download([f"{r.name}{r.specifier}" for r in fetch.values()], wheels, python)
        queue = []
        for whl in wheels.glob("*.whl"):
            name = wheel_name(whl)
            for extra in {""} | extras[name]:
                if (name, extra) not in followed:
                    followed.add((name, extra))
                    queue += requirements(whl, python, extra)
    if zip_path:
        shutil.copy2(zip_path, out / Path(zip_path).name)
    line = (f"python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/labkit-site {out}/wheels/*.whl "
            f"&& export PYTHONPATH=/tmp/labkit-site:$PYTHONPATH")
    header = "# Installs the bundle offline; then run python -m labkit from the checkout."
    (out / "install.sh").write_text(f"{header}\n{line}\n")
    mib = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    return sorted(wheel_name(w) for w in wheels.glob("*.whl")), mib, line
