"""Do reconstructions show the same person? Judged by a face-recognition network, not the eye.

dlib's face descriptor (a ResNet trained for face verification, 99.38% on LFW; two faces closer
than 0.6 are the same person by its standard) compares each held-out face with its
reconstruction. Each 64x64 face is upscaled to 256 px, its five landmarks are found once on the
real face (HOG detector; the median box where it finds none) and the same alignment serves
every image of that face, so only what is drawn differs. Blurred copies of the faces calibrate
the scale: identity holds at a 1.5 px blur and is mostly gone at 2.5 px. The floor is two
different held-out faces. A run's reconstructions are those its evaluation scored and kept, so
runs whose checkpoint stayed with an offline GPU job can be judged too. Optional (`pip install
-e '.[identity]'`), outside `make report`: dlib builds from source, about ten minutes on two cores.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from labkit import LabkitError, data as D
from labkit.metrics import recon_errors
from labkit.models import spec
from labkit.runs import Run, load_nets

THRESHOLD = 0.6  # dlib's same-person distance
SIZE = 256       # 64 px is below what the detector and landmarks were trained on
PADDING = 0.25   # dlib's chip padding around the five landmarks
UPSAMPLE = 1     # the detector's own upsampling: 955 of the first 1,000 held-out faces found, 952 without


def _dlib():
    """dlib, and the folder of its weights from face_recognition_models, found without importing
    that package (its __init__ needs pkg_resources, which recent setuptools no longer has)."""
    import importlib.util
    try:
        import dlib
    except ImportError:
        dlib = None
    weights = importlib.util.find_spec("face_recognition_models")
    if dlib is None or weights is None:
        raise LabkitError("the identity measure needs dlib and its weights: pip install -e '.[identity]' "
                          "(dlib builds from source, about ten minutes)")
    return dlib, Path(weights.submodule_search_locations[0]) / "models"


def upscaled(images_u8):
    """uint8 NCHW 64x64 -> list of uint8 HWC SIZE x SIZE arrays (bicubic), what dlib reads."""
    from PIL import Image
    return [np.asarray(Image.fromarray(img).resize((SIZE, SIZE), Image.BICUBIC))
            for img in images_u8.permute(0, 2, 3, 1).numpy()]


def blurred(images_u8, sigma):
    """The faces under a Gaussian blur of `sigma` pixels (each channel alone), as uint8."""
    from scipy.ndimage import gaussian_filter
    out = gaussian_filter(images_u8.numpy().astype(np.float64), (0, 0, sigma, sigma))
    return torch.from_numpy(np.clip(np.round(out), 0, 255).astype(np.uint8))


class FaceNet:
    """dlib's detector, five-point landmarks and descriptor, aligned once on the real faces."""

    def __init__(self, faces_u8, progress=True):
        dlib, models = _dlib()
        self.version, self.progress = dlib.__version__, progress
        self.encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        detect = dlib.get_frontal_face_detector()
        real = upscaled(faces_u8)
        boxes = [max(detect(img, UPSAMPLE), key=lambda r: r.area(), default=None) for img in real]
        self.detected = sum(b is not None for b in boxes)
        if not self.detected:
            raise LabkitError("the detector found no face in the held-out images: are they 64x64 aligned faces?")
        median = np.median([[b.left(), b.top(), b.right(), b.bottom()] for b in boxes if b is not None], 0)
        fallback = dlib.rectangle(*(int(v) for v in median))
        self.shapes = [landmarks(img, fallback if b is None else b) for img, b in zip(real, boxes)]
        self.real = self._descriptors(real, "held-out faces")

    def _descriptors(self, images, desc):
        from tqdm import tqdm
        return np.array([self.encoder.compute_face_descriptor(img, shape, 0, PADDING)
                         for img, shape in tqdm(zip(images, self.shapes), total=len(images), desc=desc, unit="face",
                                                leave=False, disable=not self.progress, file=sys.__stderr__,
                                                mininterval=2)])

    def descriptors(self, images_u8, desc=None):
        if len(images_u8) != len(self.shapes):
            raise LabkitError(f"{len(images_u8)} images for {len(self.shapes)} held-out faces")
        return self._descriptors(upscaled(images_u8), desc)


def scores(real, other):
    """How close each image's descriptor lies to its own face's (row i of `other` shows face i)."""
    from scipy.spatial.distance import cdist
    d = cdist(other, real)
    own = np.diag(d)
    return {"median_distance": float(np.median(own)), "same_person": float(np.mean(own < THRESHOLD)),
            "nearest": float(np.mean(d.argmin(1) == np.arange(len(real))))}


def floor(real):
    """Two different held-out faces: how far apart, and how often called the same person."""
    from scipy.spatial.distance import cdist
    d = cdist(real, real)[~np.eye(len(real), dtype=bool)]
    return {"median_distance": float(np.median(d)), "same_person": float(np.mean(d < THRESHOLD))}


def reconstructions(run, faces):
    """The run's reconstructions of these faces: those its evaluation kept, the very images
    metrics.json scored (from an offline GPU job, the only ones: the checkpoint stays there),
    else drawn by its networks."""
    run = Run(run)
    model = run.options()["model"]
    if not spec(model).has_encoder:
        raise LabkitError(f"{run.path}: a {model} has no encoder, so no reconstructions to judge")
    kept = run.kept_reconstructions(faces)
    if kept is not None:
        return kept
    if run.reconstructions.is_file() and not run.checkpoint.is_file():
        raise LabkitError(f"{run.path}: no checkpoint, and the reconstructions its evaluation kept are not of the "
                          f"first {len(faces)} held-out faces: pass the --data it was evaluated with and an --n no "
                          "larger than the faces kept (metrics.json's reference_count, or what the manifest says)")
    nets, _ = load_nets(run.path)
    return nets.decode(nets.encode(faces))


def identity(runs, data=None, n=1000, blurs=(), out=None, progress=True):
    """Identity scores of each run's reconstructions of the first n held-out faces, beside blurs
    of the same faces and the floor; write and return the JSON."""
    t0 = time.time()
    _dlib()  # before the minutes of work, not after
    if not runs and not blurs:
        raise LabkitError("nothing to judge: give run folders, --blur sigmas or both")
    faces, source = D.holdout_set(data, n)
    sets = {f"blur sigma {s:g} px": blurred(faces, s) for s in blurs}
    for run in runs:
        if Path(run).name in sets:
            raise LabkitError(f"{run}: two runs named {Path(run).name}; rows are named by run folder")
        sets[Path(run).name] = reconstructions(run, faces)
    net = FaceNet(faces, progress)
    rows = {}
    for name, images in sets.items():
        rows[name] = {"mse": recon_errors(faces, images)[0], **scores(net.real, net.descriptors(images, name))}
    results = {"protocol": {
        "faces": source, "count": len(faces), "detected": net.detected, "threshold": THRESHOLD, "upscale": SIZE,
        "padding": PADDING, "upsample": UPSAMPLE, "dlib": net.version,
        "runs": {Path(r).name: str(r) for r in runs}, "floor": floor(net.real), "seconds": round(time.time() - t0, 1),
        "mse": "pixels on the [0, 1] scale", "nearest": f"share whose own face is the nearest of the {len(faces)}",
    }, "rows": rows}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return results


def unjudged(judged, metrics):
    """The models of a metrics.json that reconstruct (those it measured a pixel error for) and that
    an identity.json did not judge. The same networks on the same held-out faces give the same
    pixel error, to the last digit."""
    p, q = judged["protocol"], metrics["protocol"]
    # By file name: results sent back from an offline GPU job name its paths.
    same_faces = (Path(p["faces"]).name, p["count"]) == (Path(q["reference"]).name, q["reference_count"])
    return [m for m, r in metrics["runs"].items()
            if "mse" in r and (not same_faces or judged["rows"].get(m, {}).get("mse") != r["mse"])]


def table(results):
    """The results as a Markdown table, the floor as its last row."""
    p = results["protocol"]
    lines = [f"| {p['count']:,} held-out faces | pixel MSE | distance to its face, median | "
             f"below {p['threshold']} (same person) | its face the nearest |", "|---|---|---|---|---|"]
    for name, r in results["rows"].items():
        lines.append(f"| {name} | {r['mse']:.4f} | {r['median_distance']:.2f} | {r['same_person']:.1%} | "
                     f"{r['nearest']:.1%} |")
    lines.append(f"| another held-out face (floor) | – | {p['floor']['median_distance']:.2f} | "
                 f"{p['floor']['same_person']:.1%} | – |")
    return "\n".join(lines)
