import json
import shutil
import sys

import numpy as np
import pytest
import torch

from labkit import LabkitError, identity as I
from labkit.__main__ import main
from labkit.data import holdout_set, synthetic_images
from labkit.metrics import recon_errors, sharpness
from labkit.runs import Run, load_nets

from conftest import shared_data


def test_scores_tell_own_faces_from_others():
    real = np.random.default_rng(0).normal(0, 0.1, (50, 128))  # different faces lie ~1.6 apart
    close = real + np.random.default_rng(1).normal(0, 0.01, real.shape)
    s = I.scores(real, close)
    assert s["same_person"] == 1 and s["nearest"] == 1 and s["median_distance"] < 0.2
    swapped = I.scores(real, np.roll(close, 1, axis=0))  # every image shows the next face
    assert swapped["same_person"] == 0 and swapped["nearest"] == 0 and swapped["median_distance"] > 1
    half = I.scores(real, np.concatenate([close[:25], np.roll(close[25:], 1, axis=0)]))
    assert half["same_person"] == half["nearest"] == 0.5
    f = I.floor(real)
    assert f["same_person"] == 0 and 1.4 < f["median_distance"] < 1.8


def test_blur_keeps_colour_and_removes_detail():
    faces = torch.from_numpy(synthetic_images(8, seed=1))
    soft = I.blurred(faces, 2)
    assert soft.dtype == torch.uint8 and soft.shape == faces.shape
    assert abs(soft.float().mean() - faces.float().mean()) < 1
    assert sharpness(soft) < sharpness(faces) / 4
    assert torch.equal(I.blurred(faces, 0.01), faces)


def test_unjudged_names_the_runs_identity_json_did_not_measure():
    metrics = {"protocol": {"reference": "holdout.h5", "reference_count": 1000},
               "runs": {"vae": {"mse": 0.0123}, "gan": {}, "vaegan": {"mse": 0.0198}}}
    judged = {"protocol": {"faces": "holdout.h5", "count": 1000},
              "rows": {"blur sigma 2 px": {"mse": 0.006}, "vae": {"mse": 0.0123}, "vaegan": {"mse": 0.0198}}}
    assert I.unjudged(judged, metrics) == []
    metrics["runs"]["vaegan"]["mse"] = 0.0214  # retrained on another CPU: other networks
    assert I.unjudged(judged, metrics) == ["vaegan"]
    del judged["rows"]["vae"]
    assert I.unjudged(judged, metrics) == ["vae", "vaegan"]
    judged["rows"]["vae"], metrics["runs"]["vaegan"]["mse"] = {"mse": 0.0123}, 0.0198
    judged["protocol"]["faces"] = "/elsewhere/holdout.h5"  # the metrics of an offline GPU job name its paths
    assert I.unjudged(judged, metrics) == []
    judged["protocol"]["count"] = 500  # other faces
    assert I.unjudged(judged, metrics) == ["vae", "vaegan"]


def test_without_dlib_a_one_line_error_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib raises ImportError
    assert main(["identity", "--blur", "2"]) == 2
    assert "pip install -e '.[identity]'" in capsys.readouterr().err


def test_inputs_are_checked_before_the_slow_part(two_runs, monkeypatch, capsys):
    monkeypatch.setattr(I, "_dlib", lambda: None)
    monkeypatch.setattr(I, "FaceNet", lambda *a: pytest.fail("reached the face network"))
    assert main(["identity", str(two_runs / "gan")]) == 2
    assert "a gan has no encoder" in capsys.readouterr().err
    assert main(["identity"]) == 2
    assert "nothing to judge" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["identity", "--blur", "-1"])


class PixelNet:
    """FaceNet's stand-in: an image's pixels are its descriptor."""
    seen = {}

    def __init__(self, faces, progress=True):
        self.real, self.detected, self.version = self.descriptors(faces), len(faces), "pixels"

    def descriptors(self, images, desc=None):
        self.seen[desc] = images
        return images.flatten(1).double().numpy() / 255


def test_a_run_from_a_lent_gpu_is_judged_by_the_reconstructions_its_evaluation_kept(two_runs, tmp_path, monkeypatch):
    monkeypatch.setattr(I, "_dlib", lambda: None)
    monkeypatch.setattr(I, "FaceNet", PixelNet)
    run = tmp_path / "vae"  # what reproduce sends back: no checkpoint
    shutil.copytree(two_runs / "vae", run, ignore=shutil.ignore_patterns("checkpoint.pt"))
    faces, _ = holdout_set(None, 40)
    drawn = I.blurred(faces, 1)  # stands for what the network drew there
    Run(run).keep_reconstructions(drawn, faces)
    r = I.identity([run], n=40, progress=False)
    assert torch.equal(PixelNet.seen["vae"], drawn)
    assert r["rows"]["vae"]["mse"] == recon_errors(faces, drawn)[0]
    assert I.identity([run], n=39, progress=False)["rows"]["vae"]["mse"] == recon_errors(faces[:39], drawn[:39])[0]
    with pytest.raises(LabkitError, match="no checkpoint, and the reconstructions its evaluation kept are not of"):
        I.identity([run], n=41, progress=False)  # more faces than were kept (a cut return)
    # Where the checkpoint is, reconstructions kept of other faces are drawn again by the networks.
    home = tmp_path / "home" / "vae"
    shutil.copytree(two_runs / "vae", home)
    Run(home).keep_reconstructions(drawn[:39], faces[:39])
    nets, _ = load_nets(home)
    assert torch.equal(I.reconstructions(home, faces), nets.decode(nets.encode(faces)))


@pytest.mark.skipif(shared_data() is None, reason="needs real faces: LABKIT_DATA")
def test_identity_on_real_faces(two_runs, tmp_path, capsys):
    try:
        I._dlib()
    except LabkitError:
        pytest.skip("dlib or face_recognition_models not installed")
    assert main(["identity", str(two_runs / "vae"), "--data", str(shared_data()), "--n", "40", "--blur", "1", "3",
                 "--out", str(tmp_path / "id.json")]) == 0
    r = json.loads((tmp_path / "id.json").read_text())
    p, rows = r["protocol"], r["rows"]
    assert p["count"] == 40 and p["detected"] > 30 and p["floor"]["same_person"] < 0.05
    sharp, soft, vae = rows["blur sigma 1 px"], rows["blur sigma 3 px"], rows["vae"]
    assert sharp["same_person"] > 0.9 and sharp["median_distance"] < soft["median_distance"]
    # a minute-old network draws no one in particular
    assert vae["median_distance"] > sharp["median_distance"] and vae["mse"] > sharp["mse"]
    assert "| vae |" in capsys.readouterr().out
