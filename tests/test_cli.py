from PIL import Image

from labkit.__main__ import main


def test_cli_train_sample_prepare(tmp_path, celeba_like, capsys):
    run = tmp_path / "run"
    args = ["train", "--model", "vaegan", "--profile", "smoke", "--run-dir", str(run), "--data", str(celeba_like),
            "--epochs", "1", "--batch", "16", "--width", "0.0625", "--latent", "16", "--limit", "48"]
    assert main(args) == 0
    assert {p.name for p in run.iterdir()} >= {"options.json", "stats.jsonl", "checkpoint.pt", "grids"}
    grid = Image.open(run / "grids" / "epoch-0001.png")
    assert grid.size[0] > 2 * grid.size[1] * 0.9  # reconstructions beside samples
    assert main(["sample", str(run), "--n", "16", "--nrow", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (4 * 66 + 2, 4 * 66 + 2)
    assert main(args) == 2 and "already holds a run" in capsys.readouterr().err
    assert main(args[:-2] + ["--limit", "64", "--resume"]) == 2  # settings changed since the checkpoint
    assert main(["sample", str(tmp_path / "nowhere")]) == 2
