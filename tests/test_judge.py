"""The attribute judge reads what can be read off a face, and says which attributes it cannot."""
import json

import pytest
import torch

from labkit import LabkitError, data as D, judge as J
from labkit.__main__ import main


def test_the_judge_reads_a_readable_attribute_and_not_a_coin_toss(faces_with_attributes, tmp_path):
    net, record = J.cached_judge(faces_with_attributes, tmp_path / "cache", epochs=6, progress=False)
    rows = record["attributes"]
    assert rows["Bright"]["verdict"] == "judged" and rows["Bright"]["balanced"] > 0.85
    assert rows["Coin"]["verdict"] == "not readable" and rows["Coin"]["balanced"] < 0.65
    assert rows["Rare"]["verdict"] == "too rare"
    assert record["protocol"]["trained_on"] == 600 and record["protocol"]["scored_on"] == 200
    assert "| Bright |" in J.table(record)


def test_a_trained_judge_is_read_from_its_cache(faces_with_attributes, tmp_path, monkeypatch):
    first_net, first = J.cached_judge(faces_with_attributes, tmp_path / "cache", epochs=1, progress=False)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")
    monkeypatch.setattr(J, "train_judge", no_training)
    monkeypatch.setattr(D, "training_set", no_training)  # nor are the training faces read
    net, again = J.cached_judge(faces_with_attributes, tmp_path / "cache", epochs=1, progress=False)
    assert again == first
    for a, b in zip(first_net.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="trained again"):  # other settings, another judge
        J.cached_judge(faces_with_attributes, tmp_path / "cache", epochs=2, progress=False)


def test_accuracy_against_the_majority_class_and_balanced():
    labels = torch.tensor([[1, 0], [1, 0], [1, 0], [0, 0], [1, 1], [0, 0], [1, 0], [1, 0], [0, 0], [1, 0]]).float()
    perfect = J.accuracy(labels.clone(), labels, ["A", "B"], train_labels=labels)
    assert perfect["A"] == {"accuracy": 1.0, "majority": 0.7, "balanced": 1.0, "positive_rate": 0.7,
                            "verdict": "judged"}
    always_absent = J.accuracy(torch.zeros_like(labels), labels, ["A", "B"], train_labels=labels)
    assert always_absent["B"]["accuracy"] == 0.9 and always_absent["B"]["balanced"] == 0.5  # the majority's trick
    assert always_absent["B"]["verdict"] == "not readable"


def test_without_attributes_the_judge_says_what_it_needs(celeba_like):
    with pytest.raises(LabkitError, match="needs CelebA and its list_attr_celeba"):
        J.scored_faces(celeba_like)


def test_the_judge_command_prints_the_table_and_writes_the_record(faces_with_attributes, tmp_path, capsys):
    out = tmp_path / "judge.json"
    assert main(["judge", "--data", str(faces_with_attributes), "--cache", str(tmp_path / "cache"), "--epochs", "1",
                 "--out", str(out)]) == 0
    assert "| attribute | judge | majority class |" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["attributes"]) == {"Bright", "Coin", "Rare"}
    assert main(["judge", "--data", str(tmp_path / "nowhere")]) == 2
