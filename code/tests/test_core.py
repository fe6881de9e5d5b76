"""Runtime, training loop, plotting, interactive figures and the pretrained model."""
import numpy as np
import pytest
import torch
from torch import nn

from dlcv import interactive, plotting, pretrained, runtime
from dlcv.models import SmallConvNet
from dlcv.training import History, TensorData, evaluate, fit, predict


def test_scale_and_pick(monkeypatch):
    monkeypatch.setenv("DLCV_SCALE", "large")
    assert runtime.scale() == "large" and runtime.pick(1, 2) == 2
    monkeypatch.setenv("DLCV_SCALE", "small")
    assert runtime.pick(1, 2) == 1
    assert runtime.pick(1, 2, smoke=0) == 1 and not runtime.is_smoke()
    monkeypatch.setenv("DLCV_SCALE", "smoke")
    assert runtime.is_smoke() and runtime.pick(1, 2, smoke=0) == 0 and runtime.pick(1, 2) == 1
    monkeypatch.setenv("DLCV_SCALE", "huge")
    with pytest.raises(ValueError, match="DLCV_SCALE"):
        runtime.scale()


def test_the_smoke_scale_cuts_the_training_loops_short(monkeypatch):
    """At DLCV_SCALE=smoke every training loop of the package runs, for a few batches only."""
    from dlcv import linear

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1000, 1, 28, 28, generator=g), torch.randint(0, 10, (1000,), generator=g)
    flat = x.flatten(1)
    calls = []
    net = SmallConvNet()
    net.register_forward_hook(lambda m, i, o: calls.append(len(i[0])) if m.training else None)
    monkeypatch.setenv("DLCV_SCALE", "smoke")
    history = fit(net, TensorData(x, y), TensorData(x, y), epochs=5, batch_size=100)
    assert len(history.train_loss) == runtime.SMOKE_EPOCHS == len(history.val_acc)
    assert calls == [100] * runtime.SMOKE_BATCHES * runtime.SMOKE_EPOCHS
    _, hist = linear.train_linear(flat, y, lr=0.1, steps=500, batch_size=10, record_every=100)
    assert hist["step"] == [0, runtime.SMOKE_STEPS]
    clf = linear.SoftmaxClassifier(784, 10, generator=g)
    assert len(clf.fit(flat, y, epochs=6, batch_size=50)) == runtime.SMOKE_EPOCHS
    assert runtime.limits(10, 40) == (runtime.SMOKE_EPOCHS, runtime.SMOKE_BATCHES)
    assert runtime.limits(1, 1) == (1, 1)
    from dlcv import segmentation
    seen = []
    segmentation.train_segmenter(segmentation.SegmentationNet(3, width=8),
                                 torch.zeros(100, 3, 16, 16, dtype=torch.uint8),
                                 torch.zeros(100, 16, 16, dtype=torch.int64), epochs=5,
                                 batch_size=4, on_epoch=seen.append)
    assert seen == list(range(runtime.SMOKE_EPOCHS))
    monkeypatch.setenv("DLCV_SCALE", "small")
    calls.clear()
    assert len(fit(net, TensorData(x, y), epochs=1, batch_size=100).train_loss) == 1 and len(calls) == 10
    assert runtime.limits(10, 40) == (10, 40)
    assert linear.train_linear(flat, y, lr=0.1, steps=500, batch_size=10, record_every=100)[1]["step"][-1] == 500


def test_seeding_is_repeatable():
    runtime.seed_everything(3)
    a = torch.randn(4), np.random.rand(2)
    runtime.seed_everything(3)
    b = torch.randn(4), np.random.rand(2)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError):
        runtime.seed_everything(-1)


def test_determinism_is_global_on_the_cpu_and_cudnn_only_on_a_gpu(monkeypatch):
    runtime.seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled() == (runtime.get_device(verbose=False).type == "cpu")
    with monkeypatch.context() as m:
        # What a GPU machine sees: no global mode (it would print a warning for every CUDA kernel
        # without a deterministic version), deterministic cuDNN convolutions
        m.setattr(torch.cuda, "is_available", lambda: True)
        m.setattr(torch.cuda, "get_device_name", lambda *a: "a GPU")
        m.setattr(torch.backends.cudnn, "deterministic", False)
        runtime.seed_everything(0)
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    runtime.seed_everything(0)
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(True)


def test_device_is_cpu_here_and_announced_once(capsys):
    dev = runtime.get_device()
    runtime.get_device()
    assert dev.type in ("cpu", "cuda", "mps")
    assert capsys.readouterr().out.count("dlcv: running on") <= 1


def _toy():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(512, 2, generator=g)
    y = (X[:, 0] * X[:, 1] > 0).long()
    return TensorData(X, y)


def test_fit_learns_and_is_deterministic():
    data = _toy()

    def run():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
        h = fit(model, data, data, epochs=30, lr=1e-2, batch_size=64, progress=False)
        return model, h

    m1, h1 = run()
    m2, h2 = run()
    assert isinstance(h1, History) and len(h1.train_loss) == 30 and len(h1.val_acc) == 30
    assert h1.train_loss[-1] < h1.train_loss[0] / 3 and h1.val_acc[-1] > 0.9
    assert h1.train_loss == h2.train_loss
    loss, acc = evaluate(m1, data)
    assert acc == pytest.approx(h1.val_acc[-1]) and (predict(m1, data.x) == m1(data.x).argmax(1)).all()


def test_fit_matches_a_plain_torch_loop():
    """The loop is ordinary SGD: the same shuffles and steps give the same weights."""
    data = _toy()
    torch.manual_seed(0)
    a = nn.Linear(2, 2)
    b = nn.Linear(2, 2)
    b.load_state_dict(a.state_dict())
    fit(a, data, epochs=2, optimizer=torch.optim.SGD(a.parameters(), lr=0.1), batch_size=100,
        seed=5, progress=False)
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(5)
    for _ in range(2):
        order = torch.randperm(len(data), generator=gen)
        for i in range(0, len(data), 100):
            idx = order[i:i + 100]
            opt.zero_grad()
            nn.functional.cross_entropy(b(data.x[idx]), data.y[idx]).backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight)


def test_training_input_errors():
    with pytest.raises(ValueError, match="agree in N"):
        TensorData(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="epochs"):
        fit(nn.Linear(2, 2), _toy(), epochs=0)


def test_small_convnet_shapes():
    net = SmallConvNet()
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert net.features(torch.zeros(2, 1, 28, 28)).shape == (2, 64)
    with pytest.raises(ValueError, match=r"\[N, 1, 28, 28\]"):
        net(torch.zeros(2, 784))


def test_plotting_helpers():
    plotting.use_book_style()
    fig = plotting.image_grid(np.zeros((5, 28, 28)), titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 6
    fig = plotting.plot_confusion([0, 1, 1], [0, 1, 0], ["a", "b"])
    assert fig.axes
    with pytest.raises(ValueError, match="titles"):
        plotting.image_grid(np.zeros((2, 4, 4)), titles=["x"])
    with pytest.raises(ValueError, match="labels must lie"):
        plotting.plot_confusion([0, 5], [0, 1], ["a", "b"])


def test_interactive_figure_has_a_frame_per_value_and_html_controls():
    import matplotlib.pyplot as plt

    def draw(k, mode):
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.set_title(f"{k}{mode}")
        return fig

    f = interactive.interactive_figure(draw, k=[1, 2, 3], mode=["a", "b"])
    assert len(f.frames) == 6 and len(set(f.frames.values())) == 6
    html = f.html()
    assert 'type="range"' in html and "<select" in html and html.count("data:image/png") >= 7
    # accessible: the slider says the value it shows, the frame's alt text the current values
    assert 'aria-label="k" aria-valuetext="1"' in html and 'data-name="mode"' in html
    assert 'alt="interactive figure (k = 1, mode = a)"' in html
    bundle = f._repr_mimebundle_()
    assert "text/html" in bundle
    with pytest.MonkeyPatch.context() as mp:   # the smoke scale draws the first and the last frame
        mp.setenv("DLCV_SCALE", "smoke")
        assert list(interactive.interactive_figure(draw, k=[1, 2, 3], mode=["a", "b"]).frames) == ["0,0", "2,1"]
    with pytest.raises(ValueError, match="one to three"):
        interactive.interactive_figure(draw)
    with pytest.raises(ValueError, match="fewer values"):
        interactive.interactive_figure(draw, k=list(range(9)), mode=list(range(9)))
    with pytest.raises(TypeError, match="Figure"):
        interactive.interactive_figure(lambda k: None, k=[1])


def test_pretrained_model_classifies_a_real_photo():
    from dlcv import data

    model = pretrained.efficientnet_lite0()
    preds, probs = pretrained.classify(model, [data.photo("coffee")], k=5)
    assert probs.shape == (1, 1000) and torch.allclose(probs.sum(1), torch.ones(1))
    assert preds[0][0][0] == "espresso"
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        pretrained.preprocess(np.zeros((10, 10), np.uint8))


def test_efficientnet_trunk_and_tail_recompose_the_model():
    model = pretrained.efficientnet_lite0()
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        full = model(x)
        for start in (0, 14, 16):
            tail = pretrained.EfficientNetTail(model, start, num_classes=None).eval()
            assert torch.allclose(tail(pretrained.trunk_features(model, x, start)), full, atol=1e-4)
    probe = pretrained.EfficientNetTail(model, 16, num_classes=5, trainable="head")
    trainable = [n for n, p in probe.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    with pytest.raises(ValueError):
        pretrained.trunk_features(model, x, 17)
    with torch.no_grad():
        maps = pretrained.last_feature_maps(model, x)                 # [2, 1280, 3, 3] for 96 x 96 inputs
        assert maps.shape == (2, 1280, 3, 3)
        assert torch.allclose(model._fc(maps.mean((2, 3))), full, atol=1e-4)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        pretrained.last_feature_maps(model, x[:, :1])


def test_bench_measures_three_loops_and_rejects_bad_sizes():
    from dlcv import bench

    results = bench.bench("cpu", n=256, epochs=1, repeats=1)
    assert list(results) == list(bench.WAYS) and all(v > 0 for v in results.values())
    assert "| fit (dlcv.training) |" in bench.table(results, "here")
    with pytest.raises(ValueError, match="n >= 128"):
        bench.bench("cpu", n=10)


@pytest.mark.parametrize("cvd", ["protanomaly", "deuteranomaly", "tritanomaly"])
def test_book_colours_stay_apart_for_colour_blind_readers(cvd):
    """The book's palette (Okabe-Ito) and the nine colours of segmentation label maps, seen
    with a full protan, deutan or tritan deficiency (Machado et al.'s simulation, as
    colorspacious implements it): every two colours stay at least 10 apart in CAM02-UCS (a
    difference of about 1 is just noticeable). matplotlib's tab10 fails the same test."""
    import itertools

    from colorspacious import cspace_convert, deltaE
    from matplotlib import colormaps
    from matplotlib.colors import to_hex, to_rgb

    from dlcv.segmentation import LABEL_COLOURS

    def closest_pair(colours):
        rgb = np.array([to_rgb(c) for c in colours])
        seen = cspace_convert(rgb, {"name": "sRGB1+CVD", "cvd_type": cvd, "severity": 100},
                              "sRGB1").clip(0, 1)
        return min(deltaE(seen[i], seen[j], input_space="sRGB1")
                   for i, j in itertools.combinations(range(len(colours)), 2))

    assert closest_pair(plotting.PALETTE) > 10
    assert closest_pair(LABEL_COLOURS) > 10
    assert closest_pair([to_hex(c) for c in colormaps["tab10"].colors[:8]]) < 10


def test_book_style_tells_lines_apart_by_more_than_colour():
    import matplotlib.pyplot as plt

    plotting.use_book_style()
    fig, ax = plt.subplots()
    lines = [ax.plot([0, 1], [j, j])[0] for j in range(8)]
    assert len({str(line._dash_pattern) for line in lines}) == 8    # eight distinct dash patterns
    assert len({line.get_color() for line in lines}) == 8
    assert len(set(plotting.MARKERS)) == len(plotting.MARKERS) >= 10
    plt.close(fig)


def test_device_of_reads_parameters_then_buffers():
    assert runtime.device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert runtime.device_of(nn.ReLU()) == torch.device("cpu")       # nothing to read: the CPU
    only_buffer = nn.Module()
    only_buffer.register_buffer("mean", torch.zeros(3, device="meta"))
    assert runtime.device_of(only_buffer) == torch.device("meta")
    net = nn.Sequential(nn.Linear(2, 2)).to("meta")
    assert runtime.device_of(net) == torch.device("meta")


def test_the_package_has_no_import_circle():
    """Each module's imports of other dlcv modules (at any depth in the file, functions
    included) form no cycle: a module can be read, and imported, before those that use it."""
    import ast
    import importlib
    import pkgutil
    from pathlib import Path

    import dlcv
    folder = Path(dlcv.__file__).parent
    names = {m.name for m in pkgutil.iter_modules(dlcv.__path__)}
    graph = {}
    for name in names:
        tree = ast.parse((folder / f"{name}.py").read_text())
        uses = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                uses |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlcv."):
                uses.add(node.module.split(".")[1])
        graph[name] = {u.split(".")[0] for u in uses} & names
    seen, done = set(), set()

    def visit(module, path):
        assert module not in path, f"import circle: {' -> '.join(path + [module])}"
        if module in done:
            return
        for used in graph[module]:
            visit(used, path + [module])
        done.add(module)

    for name in sorted(names):
        visit(name, [])
    assert importlib.import_module("dlcv.__main__").fetch_all


def test_the_static_figure_carries_its_script_from_package_data():
    """The controls' JavaScript is package data (dlcv/static/interactive.js), called on the
    figure's own element; its comments stay in the file, not in every page."""
    import matplotlib.pyplot as plt

    def draw(k):
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, k])
        return fig

    html = interactive.interactive_figure(draw, k=[1, 2], alt="a line").html()
    uid = html.split('id="', 1)[1].split('"', 1)[0]
    script = html.rsplit("<script>", 1)[1]
    assert script.startswith("(function (root) {") and f"(document.getElementById('{uid}'));" in script
    assert "//" not in script.split("})", 1)[0].replace("://", "")
    plt.close("all")
