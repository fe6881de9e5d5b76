"""dlcv.understanding against scikit-learn (PCA), Captum (occlusion, saliency, Grad-CAM, FGSM,
PGD) and autograd (receptive fields)."""
import numpy as np
import pytest
import torch
from torch import nn

from dlcv import understanding as U
from dlcv.conv import receptive_field

captum_attr = pytest.importorskip("captum.attr")
captum_robust = pytest.importorskip("captum.robust")


def small_cnn(seed=0, classes=5):
    """conv -> ReLU -> conv -> ReLU -> global average pooling -> linear: a CAM-shaped network."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, classes)).double().eval()


@pytest.fixture
def images():
    return torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_pca_matches_scikit_learn():
    from sklearn.decomposition import PCA

    x = torch.randn(200, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * torch.arange(1, 11)
    proj, comps, var = U.pca(x, 3)
    ref = PCA(3).fit(x.numpy())
    signs = np.sign((comps.numpy() * ref.components_).sum(1))       # each component up to its sign
    assert np.allclose(comps.numpy(), ref.components_ * signs[:, None], atol=1e-10)
    assert np.allclose(var.numpy(), ref.explained_variance_)
    assert np.allclose(proj.numpy(), ref.transform(x.numpy()) * signs, atol=1e-10)
    with pytest.raises(ValueError, match="k must be"):
        U.pca(x, 11)


def test_receptive_box_is_where_the_gradient_reaches():
    torch.manual_seed(0)
    layers = [(3, 1, 1), (2, 2, 0), (3, 1, 1), (2, 2, 0), (3, 2, 1)]
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1),
                        nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, stride=2, padding=1))
    with torch.no_grad():                       # positive weights, an input of ones: no gradient cancels
        for m in net:
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
    x = torch.ones(1, 1, 40, 40, requires_grad=True)
    out = net(x)
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        (g,) = torch.autograd.grad(out[0, 0, i, j], x, retain_graph=True)
        rows, cols = torch.nonzero(g[0, 0], as_tuple=True)
        top, left, size = U.receptive_box(i, j, layers)
        assert rows.min() == max(top, 0) and rows.max() <= top + size - 1
        assert cols.min() == max(left, 0) and cols.max() <= left + size - 1
    assert U.receptive_box(0, 0, layers)[2] == receptive_field([(k, s) for k, s, _ in layers]) == 18


def test_top_activations_finds_the_largest_values():
    acts = torch.zeros(4, 2, 3, 3)
    acts[2, 1, 0, 1], acts[2, 1, 2, 2], acts[0, 1, 1, 1] = 5.0, 4.0, 3.0
    assert U.top_activations(acts, 1, 2) == [(2, 0, 1, 5.0), (0, 1, 1, 3.0)]
    assert U.top_activations(acts, 1, 2, one_per_image=False) == [(2, 0, 1, 5.0), (2, 2, 2, 4.0)]
    with pytest.raises(ValueError, match="channel"):
        U.top_activations(acts, 2, 1)


def test_dissection_iou_of_a_unit_that_fires_on_its_concept():
    g = torch.Generator().manual_seed(0)
    concept = torch.rand(50, 8, 8, generator=g) < 0.1
    unit = concept.float() + 0.01 * torch.rand(50, 8, 8, generator=g)
    q = 1 - concept.float().mean().item()                          # fire exactly as often as the concept
    assert U.dissection_iou(unit, concept, quantile=q) > 0.95
    assert U.dissection_iou(torch.rand(50, 8, 8, generator=g), concept, quantile=q) < 0.15
    with pytest.raises(ValueError, match="both be"):
        U.dissection_iou(unit, concept[:10])


def test_occlusion_matches_captum(images):
    model = small_cnn()
    probs = lambda x: model(x).softmax(1)
    target = torch.tensor([0, 3, 1])
    grid = U.occlusion(probs, images, target, patch=4, stride=2, fill=0.0)
    assert grid.shape == (3, 5, 5)
    ours = U.occlusion_to_pixels(grid, (12, 12), 4, 2)
    theirs = captum_attr.Occlusion(probs).attribute(images, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2),
                                                    baselines=0.0, target=target)
    assert torch.allclose(ours.float(), theirs.amax(1), atol=1e-6)    # Captum returns float32
    assert torch.allclose(theirs.amin(1), theirs.amax(1))          # the patch covers all channels alike
    with pytest.raises(ValueError, match="one class index per image"):
        U.occlusion(probs, images, torch.tensor([0, 1]), 4, 2)


def test_gradient_saliency_matches_captum(images):
    model = small_cnn()
    target = torch.tensor([4, 0, 2])
    theirs = captum_attr.Saliency(model).attribute(images, target=target, abs=True)
    assert torch.allclose(U.gradient_saliency(model, images, target), theirs.amax(1))


def test_class_activation_maps_average_to_the_scores_and_match_grad_cam(images):
    model = small_cnn()
    features = model[:4](images)                                   # [3, 6, 6, 6]
    classes = torch.tensor([1, 1, 4])
    cams = U.class_activation_maps(features, model[-1].weight, classes)
    scores = model(images).gather(1, classes[:, None])[:, 0]
    assert torch.allclose(cams.mean((1, 2)) + model[-1].bias[classes], scores)   # the CAM derivation
    grad_cam = captum_attr.LayerGradCam(model, model[3]).attribute(images, target=classes, relu_attributions=False)
    assert torch.allclose(cams / (6 * 6), grad_cam[:, 0])         # with GAP, Grad-CAM = CAM / (h w)
    with_relu = captum_attr.LayerGradCam(model, model[3]).attribute(images, target=classes, relu_attributions=True)
    assert (cams < 0).any() and torch.allclose(torch.relu(cams / (6 * 6)), with_relu[:, 0])   # Grad-CAM's ReLU
    with pytest.raises(ValueError, match="same K"):
        U.class_activation_maps(features, model[-1].weight[:, :5], classes)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_and_pgd_match_captum(images, targeted):
    model, images = small_cnn(), images.clamp(-2.0, 2.0)           # start inside the bounds
    target = torch.tensor([2, 0, 1])
    ours = U.fgsm(model, images, target, 0.1, targeted=targeted, bounds=(-2.0, 2.0))
    xent = nn.CrossEntropyLoss(reduction="none")                  # Captum's default loss expects probabilities
    attack = captum_robust.FGSM(model, xent, lower_bound=-2.0, upper_bound=2.0)
    attack.zero_thresh = 0.0                                      # Captum skips pixels whose gradient is < 1e-6
    theirs = attack.perturb(images, epsilon=0.1, target=target, targeted=targeted)
    assert torch.allclose(ours, theirs)
    ours = U.pgd(model, images, target, eps=0.1, step=0.03, steps=7, targeted=targeted, bounds=(-2.0, 2.0))
    attack = captum_robust.PGD(model, xent, lower_bound=-2.0, upper_bound=2.0)
    attack.fgsm.zero_thresh = 0.0
    theirs = attack.perturb(images, radius=0.1, step_size=0.03, step_num=7, target=target, targeted=targeted)
    assert torch.allclose(ours, theirs)
    assert (ours - images).abs().max() <= 0.1 + 1e-12


def test_an_attack_changes_the_prediction_and_gradient_ascent_raises_the_score(images):
    model = small_cnn()
    pred = model(images).argmax(1)
    adv = U.pgd(model, images, pred, eps=1.0, step=0.1, steps=30)
    assert (model(adv).argmax(1) != pred).all()
    x, history = U.gradient_ascent(lambda x: model(x)[:, 3], torch.zeros(1, 3, 12, 12, dtype=torch.float64),
                                   steps=20, lr=0.3, l2=1e-3, blur_every=4, jitter=1,
                                   generator=torch.Generator().manual_seed(0))
    assert history[-1] > model(torch.zeros(1, 3, 12, 12, dtype=torch.float64))[0, 3].item() and history[-1] > history[0]
    w = torch.randn(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x, history = U.gradient_ascent(lambda x: (w * x).sum((1, 2, 3)), torch.zeros_like(w), steps=3, lr=0.1)
    step_gain = 0.1 * w.pow(2).sum() / w.abs().mean()             # a linear score gains this much per step
    assert np.allclose(history, [step_gain * t for t in (1, 2, 3)])
    with pytest.raises(ValueError, match="images"):
        U.gradient_saliency(model, images[0], 0)
