"""Tests of examples/adamml/pretrained.py: ImageNet weights through torch.hub's cache, offline.

No test touches the network: every test runs with a temporary ``TORCH_HOME`` and with torch.hub's
download function replaced, by default by one that fails as an unplugged machine does.
"""

from __future__ import annotations

import re
import sys
import urllib.error
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import pretrained as P
from torchvision_fixture import torchvision_like_state_dict

from adagate.backbones import mobilenet_v2, tsn_resnet18, tsn_resnet34, tsn_resnet50
from adagate.backbones.resnet import BasicBlock, Bottleneck, TSNResNet

FILES = {arch: url.rsplit("/", 1)[1] for arch, url in P.IMAGENET_URLS.items()}
CLASSES = 5
HEADS = ("fc.", "classifier.")




@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """torchvision-named ResNet-18 and MobileNetV2 files, written once for the module."""
    folder = tmp_path_factory.mktemp("published")
    files = {}
    for seed, (key, arch) in enumerate((("ResNet-18", "resnet18"),
                                        ("MobileNetV2", "mobilenet_v2"))):
        files[key] = folder / FILES[key]
        torch.save(torchvision_like_state_dict(arch, seed), files[key])
    return files


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$TORCH_HOME/hub/checkpoints`` on a machine without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # Forget any torch.hub.set_dir() of this process, so get_dir() reads TORCH_HOME as a fresh
    # process would; monkeypatch restores it afterwards.
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def put_in_cache(cache: Path, checkpoints: dict[str, Path], *keys: str) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for key in keys:
        (cache / checkpoints[key].name).symlink_to(checkpoints[key])


def load_quietly(networks: dict[str, nn.Module]) -> tuple[dict[str, str], list[str]]:
    lines: list[str] = []
    sources = P.load_imagenet(networks, progress=False, log=lines.append)
    return sources, lines


def demo_resnet10(in_channels: int) -> TSNResNet:
    return TSNResNet(BasicBlock, (1, 1, 1, 1), in_channels, CLASSES)


# --- which networks have ImageNet weights -------------------------------------------------------


PUBLISHED: list[tuple[Callable[[], nn.Module], str | None]] = [
    (lambda: tsn_resnet18(3, CLASSES), "resnet18-f37072fd.pth"),
    (lambda: tsn_resnet34(10, CLASSES), "resnet34-b627a593.pth"),
    (lambda: tsn_resnet50(15, None), "resnet50-0676ba61.pth"),
    (lambda: mobilenet_v2(3, None, width_mult=1.0), "mobilenet_v2-b0353104.pth"),
    (lambda: mobilenet_v2(1, CLASSES, width_mult=1.0, temporal_pool=False),
     "mobilenet_v2-b0353104.pth"),
    (lambda: demo_resnet10(3), None),
    (lambda: TSNResNet(Bottleneck, (2, 2, 2, 2), 3, CLASSES), None),
    (lambda: TSNResNet(BasicBlock, (3, 4, 23, 3), 3, CLASSES), None),
    (lambda: mobilenet_v2(3, None, width_mult=0.25), None),
    (lambda: mobilenet_v2(3, None, width_mult=0.5), None),
    (lambda: mobilenet_v2(3, None, width_mult=1.4), None),
    (lambda: nn.Linear(4, 2), None),
]


@pytest.mark.parametrize(("build", "file_name"), PUBLISHED)
def test_imagenet_url_recognises_depth_and_width(
    build: Callable[[], nn.Module], file_name: str | None
) -> None:
    with torch.device("meta"):
        network = build()
    url = P.imagenet_url(network)
    assert url == (None if file_name is None else f"https://download.pytorch.org/models/{file_name}")


def test_urls_carry_the_hash_prefix_torch_hub_checks() -> None:
    for url in P.IMAGENET_URLS.values():
        assert re.fullmatch(r"https://download\.pytorch\.org/models/\w+-[0-9a-f]{8}\.pth", url)


# --- loading ------------------------------------------------------------------------------------


def test_weights_land_inflated_with_the_heads_kept(
    hub_cache: Path, checkpoints: dict[str, Path]
) -> None:
    put_in_cache(hub_cache, checkpoints, "ResNet-18", "MobileNetV2")
    networks: dict[str, nn.Module] = {
        "recognisers.rgb": tsn_resnet18(3, CLASSES),
        "recognisers.rgbdiff": tsn_resnet18(15, CLASSES),
        "recognisers.audio": mobilenet_v2(1, CLASSES, width_mult=1.0, temporal_pool=False),
        "policy_features.rgb": mobilenet_v2(3, None, width_mult=1.0),
    }
    heads = {
        name: {k: v.clone() for k, v in net.state_dict().items() if k.startswith(HEADS)}
        for name, net in networks.items()
    }
    load_quietly(networks)

    resnet = torch.load(checkpoints["ResNet-18"], weights_only=True)
    mobilenet = torch.load(checkpoints["MobileNetV2"], weights_only=True)
    for name, network in networks.items():
        published = resnet if isinstance(network, TSNResNet) else mobilenet
        stem = "conv1.weight" if isinstance(network, TSNResNet) else "features.0.0.weight"
        for key, value in network.state_dict().items():
            if key in heads[name]:
                torch.testing.assert_close(value, heads[name][key], rtol=0, atol=0, msg=key)
            elif key != stem:
                torch.testing.assert_close(value, published[key], rtol=0, atol=0, msg=key)
        loaded = network.state_dict()[stem]
        in_channels = loaded.shape[1]
        if in_channels == 3:
            torch.testing.assert_close(loaded, published[stem], rtol=0, atol=0, msg=name)
        else:
            # Mean inflation: each input channel gets the RGB mean times 3 / C_in, so a grey
            # input gives the RGB filters' response.
            expected = published[stem].mean(dim=1, keepdim=True) * 3 / in_channels
            torch.testing.assert_close(
                loaded, expected.expand(-1, in_channels, -1, -1), msg=name
            )


def test_sources_and_one_log_line_per_loaded_network(
    hub_cache: Path, checkpoints: dict[str, Path]
) -> None:
    put_in_cache(hub_cache, checkpoints, "ResNet-18", "MobileNetV2")
    with warnings.catch_warnings(record=True):
        sources, lines = load_quietly({
            "recognisers.flow": tsn_resnet18(10, CLASSES),
            "policy_features.rgb": mobilenet_v2(3, None, width_mult=1.0),
            "policy_features.rgbdiff": mobilenet_v2(15, None, width_mult=0.5),
        })
    assert sources == {
        "recognisers.flow": str(hub_cache / "resnet18-f37072fd.pth"),
        "policy_features.rgb": str(hub_cache / "mobilenet_v2-b0353104.pth"),
        "policy_features.rgbdiff": "random (no ImageNet weights for MobileNetV2 width 0.5)",
    }
    assert len(lines) == 2
    assert lines[0].startswith("recognisers.flow: ImageNet ResNet-18 from ")
    assert "resnet18-f37072fd.pth" in lines[0]
    assert "from 3 to 10 channels" in lines[0]
    assert lines[1].startswith("policy_features.rgb: ImageNet MobileNetV2 width 1.0 from ")
    assert "inflated" not in lines[1]


def test_networks_without_imagenet_weights_are_named_in_one_warning(hub_cache: Path) -> None:
    networks: dict[str, nn.Module] = {
        "recognisers.rgb": demo_resnet10(3),
        "policy_features.rgb": mobilenet_v2(3, None, width_mult=0.25),
        "fusion": nn.Linear(4, 2),
    }
    before = {name: {k: v.clone() for k, v in net.state_dict().items()}
              for name, net in networks.items()}
    with pytest.warns(UserWarning) as record:
        sources, lines = load_quietly(networks)
    assert len(record) == 1
    message = str(record[0].message)
    for name in networks:
        assert name in message
    assert "ResNet-10" in message and "MobileNetV2 width 0.25" in message
    assert sources == {
        "recognisers.rgb": "random (no ImageNet weights for ResNet-10)",
        "policy_features.rgb": "random (no ImageNet weights for MobileNetV2 width 0.25)",
        "fusion": "random (no ImageNet weights for Linear)",
    }
    assert lines == []
    for name, network in networks.items():
        for key, value in network.state_dict().items():
            torch.testing.assert_close(value, before[name][key], rtol=0, atol=0)


def test_all_published_networks_warn_nothing(
    hub_cache: Path, checkpoints: dict[str, Path]
) -> None:
    put_in_cache(hub_cache, checkpoints, "ResNet-18")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_quietly({"recognisers.rgb": tsn_resnet18(3, CLASSES)})


def test_each_checkpoint_is_read_once_for_many_networks(
    hub_cache: Path, checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    put_in_cache(hub_cache, checkpoints, "ResNet-18")
    urls: list[str] = []
    read = torch.hub.load_state_dict_from_url

    def counting(url: str, *args: object, **kwargs: object) -> dict[str, object]:
        urls.append(url)
        return read(url, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", counting)
    load_quietly({"recognisers.rgb": tsn_resnet18(3, CLASSES),
                  "recognisers.flow": tsn_resnet18(10, CLASSES)})
    assert urls == [P.IMAGENET_URLS["ResNet-18"]]


# --- downloading and offline --------------------------------------------------------------------


def test_a_missing_file_is_downloaded_into_the_hub_cache(
    hub_cache: Path, checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []

    def online(url: str, dst: str, *args: object, **kwargs: object) -> None:
        calls.append((url, dst))
        Path(dst).write_bytes(checkpoints["MobileNetV2"].read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", online)
    network = mobilenet_v2(1, CLASSES, width_mult=1.0, temporal_pool=False)
    sources, _ = load_quietly({"recognisers.audio": network})

    path = hub_cache / "mobilenet_v2-b0353104.pth"
    assert calls == [("https://download.pytorch.org/models/mobilenet_v2-b0353104.pth", str(path))]
    assert sources == {"recognisers.audio": str(path)}
    published = torch.load(path, weights_only=True)
    torch.testing.assert_close(network.state_dict()["features.1.conv.0.0.weight"],
                               published["features.1.conv.0.0.weight"], rtol=0, atol=0)


def test_offline_with_files_missing_names_each_and_loads_nothing(
    hub_cache: Path, checkpoints: dict[str, Path]
) -> None:
    put_in_cache(hub_cache, checkpoints, "ResNet-18")
    networks: dict[str, nn.Module] = {
        "recognisers.rgbdiff": tsn_resnet18(15, CLASSES),
        "recognisers.rgb": tsn_resnet50(3, CLASSES),
        "recognisers.flow": tsn_resnet50(10, CLASSES),
        "policy_features.rgb": mobilenet_v2(3, None, width_mult=1.0),
    }
    before = {name: {k: v.clone() for k, v in net.state_dict().items()}
              for name, net in networks.items()}
    with pytest.raises(P.MissingCheckpointError) as caught:
        load_quietly(networks)

    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert str(hub_cache) in message
    assert str(hub_cache) == str(Path(torch.hub.get_dir()) / "checkpoints")
    for key in ("ResNet-50", "MobileNetV2"):
        assert FILES[key] in message and P.IMAGENET_URLS[key] in message
    assert "recognisers.rgb, recognisers.flow" in message
    assert "URLError" in message
    assert FILES["ResNet-18"] not in message
    # Checked before loading: the network whose file is cached is still untouched.
    for name, network in networks.items():
        for key, value in network.state_dict().items():
            torch.testing.assert_close(value, before[name][key], rtol=0, atol=0)


@pytest.mark.parametrize("failure", [
    TimeoutError("timed out"),
    ConnectionRefusedError(111, "Connection refused"),
    urllib.error.HTTPError("https://x", 503, "Service Unavailable", {}, None),  # type: ignore[arg-type]
])
def test_every_kind_of_connection_failure_reads_as_a_missing_file(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch, failure: OSError
) -> None:
    def failing(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(torch.hub, "download_url_to_file", failing)
    with pytest.raises(P.MissingCheckpointError, match=r"resnet18-f37072fd\.pth"):
        load_quietly({"recognisers.rgb": tsn_resnet18(3, CLASSES)})


def test_rejects_what_is_not_a_module(hub_cache: Path) -> None:
    expected = r"networks\['recognisers.rgb'\]: expected an nn.Module, got int"
    with pytest.raises(ValueError, match=expected):
        load_quietly({"recognisers.rgb": 3})  # type: ignore[dict-item]
