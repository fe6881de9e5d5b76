"""dlcv.recipes and the training loop's augmentation and early stopping, against torch."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlcv import recipes
from dlcv.training import TensorData, fit


def test_initialisations_keep_or_lose_the_signal():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 512, generator=g)
    small = recipes.activation_stats(x, 8, 512, recipes.INITS["small random (0.01)"], generator=g)
    xavier = recipes.activation_stats(x, 8, 512, recipes.INITS["Xavier (1/√D_in)"], generator=g)
    kaiming = recipes.activation_stats(x, 8, 512, recipes.INITS["Kaiming (√(2/D_in))"], torch.relu, generator=g)
    assert small[-1].std() < 1e-4 and 0.1 < xavier[-1].std() < 1
    assert 0.5 < kaiming[-1].pow(2).mean().sqrt() < 2


def test_initialisation_stds_match_torch_init_and_shared_weights_repeat_a_draw():
    w = torch.empty(4096, 1024)                                     # nn.Linear layout [out, in]
    torch.nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")
    assert abs(w.std() - recipes.INITS["Kaiming (√(2/D_in))"](1024)) < 1e-3
    torch.nn.init.xavier_normal_(w[:1024])                          # square: 2/(in+out) = 1/in
    assert abs(w[:1024].std() - recipes.INITS["Xavier (1/√D_in)"](1024)) < 1e-3
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    drawn = recipes.activation_stats(x, 3, 32, recipes.INITS["Xavier (1/√D_in)"], generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    shared = [torch.randn(64, 32, generator=g), torch.randn(32, 32, generator=g), torch.randn(32, 32, generator=g)]
    reused = recipes.activation_stats(x, 3, 32, recipes.INITS["Xavier (1/√D_in)"], weights=shared)
    assert all(torch.allclose(a, b) for a, b in zip(drawn, reused))
    with pytest.raises(ValueError, match="one matrix per layer"):
        recipes.activation_stats(x, 2, 32, recipes.INITS["Xavier (1/√D_in)"], weights=shared)
    with pytest.raises(ValueError, match=r"weights\[0\] must be \[64, 16\]"):
        recipes.activation_stats(x, 3, 16, recipes.INITS["Xavier (1/√D_in)"], weights=shared)


def test_dropout_matches_torch_in_expectation_and_is_identity_in_eval():
    x = torch.ones(200_000)
    g = torch.Generator().manual_seed(0)
    ours, theirs = recipes.dropout(x, 0.3, generator=g), F.dropout(x, 0.3, training=True)
    for out in (ours, theirs):
        assert abs((out == 0).float().mean() - 0.3) < 0.01 and abs(out.mean() - 1) < 0.01
    assert set(ours.unique().tolist()) == set(theirs.unique().tolist())
    assert torch.equal(recipes.dropout(x, 0.3, training=False), x)
    with pytest.raises(ValueError):
        recipes.dropout(x, 1.0)


def test_mixup_blends_inputs_and_targets_alike():
    g = torch.Generator().manual_seed(0)
    x = torch.eye(6)[:, None, :].repeat(1, 1, 1)          # [6, 1, 6]: example i is e_i
    y = torch.arange(6)
    xm, t = recipes.mixup(x, y, 6, alpha=0.4, generator=g)
    assert torch.allclose(t.sum(1), torch.ones(6)) and torch.allclose(xm[:, 0], t)
    xm2, t2 = recipes.mixup(x, y, 6, alpha=0.4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, t2)
    with pytest.raises(ValueError):
        recipes.mixup(x, y[:3], 6)


def test_schedules_match_torch_schedulers():
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    step = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 6], gamma=0.1)
    for epoch in range(9):
        assert math.isclose(opt.param_groups[0]["lr"], recipes.step_lr(epoch, 0.1, [3, 6]), rel_tol=1e-9)
        opt.step(), step.step()
    opt = torch.optim.SGD([w], lr=0.1)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    for t in range(11):
        assert math.isclose(opt.param_groups[0]["lr"], recipes.cosine_lr(t, 10, 0.1, 0.001), rel_tol=1e-6)
        opt.step(), cos.step()


def test_search_points_and_ensemble():
    grid = recipes.grid_points(3, [(0, 1), (10, 20)])
    assert grid.shape == (9, 2) and len(grid[:, 0].unique()) == 3
    rnd = recipes.random_points(9, [(0, 1), (10, 20)], torch.Generator().manual_seed(0))
    assert len(rnd[:, 0].unique()) == 9 and (rnd[:, 1] >= 10).all()
    models = [torch.nn.Linear(3, 4) for _ in range(3)]
    p = recipes.ensemble_predict(models, torch.randn(5, 3))
    assert torch.allclose(p.sum(1), torch.ones(5))
    with pytest.raises(ValueError):
        recipes.ensemble_predict([], torch.randn(5, 3))


def test_fit_early_stopping_restores_the_best_weights_and_accepts_mixup():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 20, generator=g), torch.randint(0, 3, (40,), generator=g)
    xv, yv = torch.randn(40, 20, generator=g), torch.randint(0, 3, (40,), generator=g)  # noise: overfits
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 3)
    h = fit(model, TensorData(x, y), TensorData(xv, yv), epochs=60, lr=0.05, batch_size=8,
            restore_best=True, patience=5, progress=False)
    assert len(h.val_loss) < 60 and h.best_epoch == min(range(len(h.val_loss)), key=h.val_loss.__getitem__)
    restored = F.cross_entropy(model(xv), yv).item()
    assert math.isclose(restored, h.val_loss[h.best_epoch], rel_tol=1e-4)
    h2 = fit(torch.nn.Linear(20, 3), TensorData(x, y), epochs=2, progress=False,
             augment=lambda xb, yb, gen: recipes.mixup(xb, yb, 3, generator=gen))
    assert len(h2.train_loss) == 2
    with pytest.raises(ValueError, match="validation"):
        fit(model, TensorData(x, y), epochs=1, restore_best=True, progress=False)


def test_shift_and_flip_moves_pixels_but_keeps_content():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 4] = 1.0
    out, y = recipes.shift_and_flip(x, torch.arange(64), torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape and torch.equal(y, torch.arange(64))
    assert (out.sum(dim=(1, 2, 3)) == 1).all()            # the bright pixel stays inside the 8x8 window
    positions = {tuple(torch.nonzero(o[0]).flatten().tolist()) for o in out}
    assert len(positions) > 5
    with pytest.raises(ValueError):
        recipes.shift_and_flip(torch.zeros(3, 8, 8), torch.arange(3))
