"""dlcv.zoo: every stored model is in the package, small, and has its recorded SHA-256; it loads
into the network its recipe builds; a damaged file is refused by name; and the recipe that made
it still runs (at the smoke scale, where training is cut), writing a file that loads back."""
import shutil

import pytest
import torch

from dlcv import diffusion, zoo


@pytest.mark.parametrize("name", zoo.names())
def test_stored_file_is_small_and_has_its_hash(name):
    file = zoo.path(name)
    assert file.exists(), f"{file} is missing: python -m dlcv.zoo train {name}"
    assert file.stat().st_size <= zoo.MAX_BYTES
    assert zoo.sha256(file) == zoo.ENTRIES[name].sha256


def test_the_zoo_stays_within_ten_megabytes_and_two_models():
    assert len(zoo.names()) <= 2
    assert sum(zoo.path(n).stat().st_size for n in zoo.names()) <= 10_000_000


@pytest.mark.parametrize("name", zoo.names())
def test_load_fills_the_built_network(name):
    model = zoo.load(name)
    stored = torch.load(zoo.path(name), weights_only=True)
    assert not model.training
    assert set(model.state_dict()) == set(stored)
    for key, value in model.state_dict().items():
        assert torch.equal(value, stored[key]), key


def test_a_damaged_file_is_refused_with_its_name(tmp_path, monkeypatch):
    name = zoo.names()[0]
    bad = tmp_path / f"{name}.pt"
    shutil.copy(zoo.path(name), bad)
    with open(bad, "r+b") as f:
        f.seek(2000)
        f.write(b"\x00\x01\x02\x03")
    monkeypatch.setattr(zoo, "path", lambda n: bad)
    with pytest.raises(ValueError, match="SHA-256"):
        zoo.load(name)
    monkeypatch.setattr(zoo, "path", lambda n: tmp_path / "gone.pt")
    with pytest.raises(FileNotFoundError, match="python -m dlcv.zoo train"):
        zoo.load(name)
    with pytest.raises(KeyError, match="no stored model"):
        zoo.load("no-such-model")


@pytest.mark.parametrize("name", zoo.names())
def test_the_recipe_runs_at_the_smoke_scale_and_its_file_loads(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DLCV_SCALE", "smoke")
    model, info = zoo.train(name)
    assert info["steps"] == zoo.ENTRIES[name].steps
    digest = zoo.save(model, tmp_path / "a" / f"{name}.pt")
    assert digest == zoo.save(model, tmp_path / "b" / "another-name.pt")   # the name is not hashed
    assert digest != zoo.ENTRIES[name].sha256                                # a cut run is not the model
    again = zoo.ENTRIES[name].build()
    again.load_state_dict(torch.load(tmp_path / "a" / f"{name}.pt", weights_only=True))
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_the_stored_digit_model_draws_the_digits_asked_for():
    """A cheap check that the stored weights are the trained ones: with a perfect-noise-free
    start, the samples for two different labels differ, and are images (finite, in range)."""
    model = zoo.load("digit-diffusion")
    labels = torch.tensor([0, 1, 7, 7])
    x = diffusion.ddim_sample(model, zoo.digit_diffusion_schedule(), (4, 1, 16, 16), 10, labels=labels,
                              guidance=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all() and x.abs().max() <= 1.0 + 1e-5
    ink = diffusion.full_digits(x).flatten(1).mean(1)
    assert ((ink > 0.05) & (ink < 0.5)).all()       # strokes on a background, not blank or filled
    assert (x[0] - x[1]).abs().mean() > 0.1


def test_command_line_lists_and_checks(capsys):
    assert zoo.main(["list"]) == 0
    assert "digit-diffusion" in capsys.readouterr().out
    assert zoo.main(["check"]) == 0
    assert "ok" in capsys.readouterr().out
