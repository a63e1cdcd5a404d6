"""Stable Diffusion's VAE and TAESD through diffusers, offline: local folders and a local Hub cache stand in for
the download (same from_pretrained call), SD-config weights in latentlab's VAE, the fallback, the value ranges."""

import ast
import http.server
import socket
import threading
import time
import types
from pathlib import Path

import diffusers
import huggingface_hub.constants
import huggingface_hub.utils._detect_agent as detect_agent
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny
from PIL import Image

from latentlab import sd, widgets
from latentlab.errors import InputError
from latentlab.vae import VAE, VAEConfig

SMALL_KL = dict(  # SD's layout (4 resolutions: factor 8, 4 latent channels), tiny widths for speed
    block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4,
)


def _image(size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator("cpu").manual_seed(seed)) * 2 - 1


@pytest.fixture
def kl_folder(tmp_path):
    torch.manual_seed(0)
    model = AutoencoderKL(**SMALL_KL, scaling_factor=0.5).eval()  # not SD's 0.18215: proves it is read from config
    model.save_pretrained(tmp_path / "vae")
    return tmp_path / "vae", model


@pytest.fixture(autouse=True)
def no_env_sources(monkeypatch):
    for spec in sd.SD_MODELS.values():
        monkeypatch.delenv(spec.env_var, raising=False)


def test_a_saved_autoencoder_kl_folder_loads_with_its_own_scaling_factor(kl_folder):
    folder, reference = kl_folder
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    codec = sd.load_sd_vae(device="cpu", source=folder)
    assert codec.name == "sd-vae" and codec.scaling_factor == 0.5 and codec.factor == 8
    x = _image()
    z = codec.encode(x)
    assert z.shape == (1, 4, 4, 4)
    with torch.no_grad():
        expected = reference.encode(x).latent_dist.mode() * 0.5
        assert torch.allclose(z, expected, atol=1e-6)
        image = codec.decode(z)
        assert torch.allclose(image, reference.decode(z / 0.5).sample.clamp(-1, 1), atol=1e-6)
    assert image.shape == (1, 3, 32, 32) and image.min() >= -1 and image.max() <= 1


def test_the_env_var_points_the_loader_at_a_local_copy(kl_folder, monkeypatch):
    folder, _ = kl_folder
    monkeypatch.setenv("LATENTLAB_SD_VAE", str(folder))
    assert str(folder) in sd.load_sd_vae(device="cpu").description


def test_a_pinned_revision_in_the_local_hub_cache_loads_offline(kl_folder, tmp_path, monkeypatch):
    """the download path itself: from_pretrained(repo, revision=<hash>) answered by the Hub cache, no network"""
    folder, reference = kl_folder
    primary = sd.SD_MODELS["sd-vae"].sources[0]
    snapshot = tmp_path / "hub" / f"models--{primary.repo_id.replace('/', '--')}" / "snapshots" / primary.revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    codec = sd.load_sd_vae(device="cpu")
    assert codec.description == f"Stable Diffusion's VAE from {primary}"
    assert torch.equal(codec.model.state_dict()["decoder.conv_out.weight"], reference.state_dict()["decoder.conv_out.weight"])


def test_each_source_is_tried_pinned_and_safetensors_only(monkeypatch):
    calls = []

    def spy(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        raise OSError("offline")

    monkeypatch.setattr(AutoencoderKL, "from_pretrained", spy)
    with pytest.raises(sd.WeightsUnavailable):
        sd.load_sd_vae()
    assert [c[0] for c in calls] == ["stabilityai/sd-vae-ft-mse", "stable-diffusion-v1-5/stable-diffusion-v1-5"]
    for (_, kwargs), source in zip(calls, sd.SD_MODELS["sd-vae"].sources, strict=True):
        assert kwargs["use_safetensors"] is True and kwargs["local_files_only"] is True  # HF_HUB_OFFLINE=1 (conftest)
        assert kwargs["revision"] == source.revision and kwargs["subfolder"] == source.subfolder
    assert len(sd.SD_MODELS["sd-vae"].sources[0].revision) == 40  # a full commit hash


def test_offline_raises_one_sentence_that_names_the_way_on():
    with pytest.raises(sd.WeightsUnavailable) as info:
        sd.load_sd_vae()
    message = str(info.value)
    assert "HF_HUB_OFFLINE=1 is set" in message and "course VAE" in message and "factor 8, 4 channels" in message
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message  # one sentence
    assert isinstance(info.value, InputError)  # the CLI and the lessons catch it like any input error


def test_a_repo_that_does_not_exist_fails_the_same_clear_way():
    with pytest.raises(sd.WeightsUnavailable, match="nobody-here/no-such-taesd"):
        sd.load_taesd(source="nobody-here/no-such-taesd")
    with pytest.raises(InputError, match="no model folder"):
        sd.load_taesd(source="/no/such/folder")


def test_without_network_the_loader_uses_the_cache_only(monkeypatch, no_proxies):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # a learner's machine: offline not set
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")  # refuses at once
    seen = []

    def spy(repo_id, **kwargs):
        seen.append((kwargs["local_files_only"], huggingface_hub.constants.HF_HUB_OFFLINE))
        raise OSError("not cached")

    monkeypatch.setattr(AutoencoderTiny, "from_pretrained", spy)
    with pytest.raises(sd.WeightsUnavailable, match="127.0.0.1 cannot be reached"):
        sd.load_taesd()
    assert seen == [(True, True), (True, True)]  # cache only, with huggingface_hub's offline mode in force
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # only for those calls


# ---- the one hub check: HF_ENDPOINT, proxies, and a resolver that hangs

@pytest.fixture
def no_proxies(monkeypatch):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local_server():
    """an HTTP server on loopback that answers HEAD with 200 and records each request line"""
    lines = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            lines.append(self.requestline)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", lines
    server.shutdown()
    server.server_close()


@pytest.fixture
def hanging_resolver(monkeypatch):
    """DNS that never answers (a black-holed network) for every name but loopback; records what was looked up"""
    asked, release = [], threading.Event()
    real = socket.getaddrinfo

    def hang(host, *args, **kwargs):
        if host in ("127.0.0.1", "localhost", "::1"):
            return real(host, *args, **kwargs)
        asked.append(host)
        release.wait(30)
        raise socket.gaierror("the resolver hung")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    yield asked
    release.set()


def test_the_hub_check_asks_the_endpoint_hf_endpoint_names(monkeypatch, no_proxies, local_server):
    url, lines = local_server
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)  # what HF_ENDPOINT=<mirror> sets
    assert sd.hub_unreachable(timeout=2) is None
    assert lines == ["HEAD / HTTP/1.1"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert sd.hub_unreachable(timeout=2) == "HF_HUB_OFFLINE=1 is set" and len(lines) == 1  # not even asked


def test_the_hub_check_goes_through_the_proxy(monkeypatch, no_proxies, local_server, hanging_resolver):
    proxy, lines = local_server
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://hub.example")  # only the proxy can reach it
    monkeypatch.setenv("HTTP_PROXY", proxy)
    assert sd.hub_unreachable(timeout=2) is None
    assert lines == ["HEAD http://hub.example/ HTTP/1.1"] and hanging_resolver == []  # the proxy resolves, not us
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    assert "hub.example cannot be reached" in sd.hub_unreachable(timeout=2)


def test_a_hanging_resolver_cannot_hang_the_hub_check(monkeypatch, no_proxies, hanging_resolver):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hub.example")
    start = time.perf_counter()
    assert sd.hub_unreachable(timeout=0.5) == "hub.example did not answer within 0.5 s"
    assert time.perf_counter() - start < 2 and hanging_resolver == ["hub.example"]


def test_a_cached_model_loads_without_a_single_lookup_when_the_network_is_a_black_hole(
    kl_folder, tmp_path, monkeypatch, hanging_resolver
):
    """diffusers' local_files_only alone still asks DNS (huggingface_hub's user-agent fetches a registry first)"""
    folder, reference = kl_folder
    primary = sd.SD_MODELS["sd-vae"].sources[0]
    snapshot = tmp_path / "hub" / f"models--{primary.repo_id.replace('/', '--')}" / "snapshots" / primary.revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # a learner's machine: offline not set
    monkeypatch.setattr(detect_agent, "_registry", None, raising=False)  # nothing fetched yet in this process
    monkeypatch.setattr(huggingface_hub.constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agents.json"), raising=False)
    monkeypatch.setattr(sd, "hub_unreachable", lambda timeout=3.0: "no network (test)")
    start = time.perf_counter()
    codec = sd.load_sd_vae(device="cpu")
    assert time.perf_counter() - start < 10 and hanging_resolver == []
    assert torch.equal(codec.model.state_dict()["decoder.conv_out.weight"], reference.state_dict()["decoder.conv_out.weight"])
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # offline mode only for that call


def test_a_pickle_only_folder_is_refused(tmp_path):
    AutoencoderKL(**SMALL_KL).save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert not list((tmp_path / "bin").glob("*.safetensors"))
    with pytest.raises(sd.WeightsUnavailable):
        sd.load_sd_vae(source=tmp_path / "bin")


def test_offline_the_lesson_continues_with_the_course_vae(monkeypatch):
    course = VAE(VAEConfig(block_out_channels=(8, 8, 8, 8), norm_num_groups=4)).eval()
    monkeypatch.setattr(sd, "load_course_vae", lambda device=None: course)
    codec, which = sd.load_sd_vae_or_course()
    assert which == "course-vae" and codec.model is course
    assert codec.description == ("Stable Diffusion's VAE could not be loaded (HF_HUB_OFFLINE=1 is set), so this lesson "
                                 "continues with the course VAE, which has the same latent geometry (factor 8, 4 channels).")
    z = codec.encode(_image())
    assert z.shape == (1, 4, 4, 4)
    assert torch.allclose(z, course.encode(_image()).mode() * course.config.scaling_factor)
    _, which = sd.load_taesd_or_course()
    assert which == "course-vae"


def test_taesd_gets_minus_one_to_one_and_converts_to_its_zero_one_exactly_once(tmp_path):
    torch.manual_seed(0)
    AutoencoderTiny().save_pretrained(tmp_path / "taesd")  # TAESD's own architecture (diffusers' defaults)
    codec = sd.load_taesd(device="cpu", source=tmp_path / "taesd")
    assert codec.scaling_factor == 1.0 and codec.factor == 8  # TAESD's latents come out already scaled
    x = _image()
    net = codec.model
    with torch.no_grad():
        raw = net.encoder.layers((x + 1) / 2)  # the TAESD network itself works on [0, 1] images
        assert torch.allclose(codec.encode(x), raw, atol=1e-5)
        z = torch.randn(1, 4, 4, 4, generator=torch.Generator("cpu").manual_seed(1))
        raw01 = net.decoder.layers(torch.tanh(z / 3) * 3)  # TAESD's decoder: -> [0, 1]
        assert torch.allclose(codec.decode(z), (raw01 * 2 - 1).clamp(-1, 1), atol=1e-5)


def test_sd_config_weights_in_latentlab_vae_give_autoencoder_kl_outputs():
    """the real SD architecture (83.7M parameters, random weights) at 64x64 to stay fast on a CPU"""
    sd_vae = sd.untrained("sd-vae")
    assert sum(p.numel() for p in sd_vae.model.parameters()) == 83_653_863
    mine = sd.sd_vae_into_latentlab(sd_vae)
    assert isinstance(mine, VAE) and mine.config.block_out_channels == (128, 256, 512, 512)
    x = _image(64)
    with torch.no_grad():
        ref_mean = sd_vae.model.encode(x).latent_dist.mean
        assert torch.allclose(mine.encode(x).mean, ref_mean, atol=1e-4)
        z = ref_mean * 3  # a latent of larger scale than the random encoder's mean, like SD's
        assert torch.allclose(mine.decode(z), sd_vae.model.decode(z).sample, atol=1e-4)
    codec = sd.LatentCodec(mine, "mine")  # the same interface around the learner's model
    assert torch.allclose(codec.encode(x), sd_vae.encode(x), atol=1e-4)


def test_sd_vae_into_latentlab_refuses_taesd():
    with pytest.raises(InputError, match="AutoencoderTiny"):
        sd.sd_vae_into_latentlab(sd.untrained("taesd"))


# ---- value ranges: converted by a stated rule, or refused; never silently washed out

def test_ranges_converted_by_rule():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    expected = torch.tensor(u8, dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1
    assert torch.allclose(sd.as_vae_images(u8), expected, atol=1e-6)
    assert torch.allclose(sd.as_vae_images(Image.fromarray(u8)), expected, atol=1e-6)
    assert torch.allclose(sd.as_vae_images(torch.tensor(u8).permute(2, 0, 1)[None]), expected, atol=1e-6)
    x01 = (expected + 1) / 2
    assert torch.allclose(sd.as_vae_images(x01, value_range="0..1"), expected, atol=1e-6)
    assert torch.equal(sd.as_vae_images(expected), expected)


def test_ranges_refused_with_the_fix_in_the_message():
    x = _image(16)
    with pytest.raises(InputError, match="value_range='0..1'"):
        sd.as_vae_images((x + 1) / 2)  # [0, 1] where [-1, 1] is expected
    with pytest.raises(InputError, match="0..255"):
        sd.as_vae_images((x + 1) * 127.5)  # 0..255 floats
    with pytest.raises(InputError, match="expected \\[0, 1\\] \\(value_range='0..1' says so"):
        sd.as_vae_images(x, value_range="0..1")  # says [0, 1] but holds negatives
    with pytest.raises(InputError, match="divisible by 8"):
        sd.as_vae_images(torch.zeros(1, 3, 20, 16) - 0.5)
    with pytest.raises(InputError, match="value_range must be"):
        sd.as_vae_images(x, value_range="0..255")
    light = torch.full((1, 3, 16, 16), 0.8)  # a light-grey image that really is [-1, 1]: allowed when said so
    assert torch.equal(sd.as_vae_images(light, value_range="-1..1"), light)


def test_a_zero_one_image_reaches_the_model_as_its_minus_one_one_twin(kl_folder):
    folder, _ = kl_folder
    codec = sd.load_sd_vae(device="cpu", source=folder)
    x = _image()
    with pytest.raises(InputError, match="washed out"):
        codec.encode((x + 1) / 2)
    assert torch.allclose(codec.encode((x + 1) / 2, value_range="0..1"), codec.encode(x), atol=1e-5)
    with pytest.raises(InputError, match="z\\[None\\]"):
        codec.decode(torch.zeros(4, 4, 4))


# ---- img2img's first step and the live / release decoders

def _diffusers_get_timesteps():
    """StableDiffusionImg2ImgPipeline.get_timesteps, compiled from diffusers' own source (its module needs
    transformers, which the course does not install)"""
    path = Path(diffusers.__file__).parent / "pipelines" / "stable_diffusion" / "pipeline_stable_diffusion_img2img.py"
    tree = ast.parse(path.read_text())
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "get_timesteps")
    namespace = {}
    exec(compile(ast.Module([function], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["get_timesteps"]


def test_img2img_start_matches_the_diffusers_pipeline():
    z0 = torch.randn(1, 4, 8, 8, generator=torch.Generator("cpu").manual_seed(0))
    for strength in (0.3, 0.75, 1.0):
        scheduler = sd.sd_scheduler()
        noisy, t = sd.img2img_start(z0, strength, scheduler, 50, torch.Generator("cpu").manual_seed(1))
        pipe = types.SimpleNamespace(scheduler=scheduler)
        timesteps, steps = _diffusers_get_timesteps()(pipe, 50, strength, "cpu")
        assert t == int(timesteps[0]) and steps == int(50 * strength)
        noise = torch.randn(z0.shape, generator=torch.Generator("cpu").manual_seed(1))
        assert torch.allclose(noisy, scheduler.add_noise(z0, noise, timesteps[:1]))
    assert t == 980  # strength 1: the first of 50 "leading" steps, almost pure noise


@pytest.mark.parametrize("strength, steps, words", [
    (0.0, 50, "strength must be a number in (0, 1]"),
    (float("nan"), 50, "not nan"),
    (1.5, 50, "strength must be"),
    (0.01, 50, "keeps none of the 50 steps; raise it to at least 0.02"),
    (0.5, 0, "num_inference_steps must be a whole number from 1 to 1000"),
    (0.5, -5, "not -5"),
    (0.5, 2.5, "not 2.5"),
    (0.5, 5000, "from 1 to 1000"),
])
def test_img2img_start_refuses_bad_settings_in_one_sentence(strength, steps, words):
    z0 = torch.zeros(1, 4, 8, 8)
    with pytest.raises(InputError) as info:
        sd.img2img_start(z0, strength, num_inference_steps=steps)
    message = str(info.value)
    assert words in message and message.endswith(".") and "\n" not in message


def test_channel_sliders_redraw_with_the_release_decoder():
    class Flat:
        """decodes every latent to one flat grey; records its calls"""

        def __init__(self, value):
            self.value, self.calls = value, 0

        def decode(self, z):
            self.calls += 1
            return torch.full((1, 3, 8 * z.shape[-2], 8 * z.shape[-1]), self.value)

    live, sharp = Flat(-0.5), Flat(0.5)
    app = widgets.channel_sliders(live, torch.randn(1, 4, 2, 2), release_vae=sharp)
    found = {}

    def walk(w):
        found.update({cls: w for cls in getattr(w, "_dom_classes", ())})
        for child in getattr(w, "children", ()):
            walk(child)

    walk(app)
    assert sharp.calls == 1 and live.calls == 0  # the first picture comes from the better decoder
    found["latentlab-gain-0"].value = 2.0  # no event loop here: the release decode follows at once
    assert live.calls == 1 and sharp.calls == 2
    picture = np.asarray(Image.open(__import__("io").BytesIO(found["latentlab-decoded"].value)))
    assert picture.mean() == pytest.approx(191, abs=1)  # 0.5 in [-1, 1]: the release decoder drew last
    assert "on release" in found["latentlab-status"].value


# ---- the banner: which model a panel really shows


def test_the_fallback_names_the_model_it_replaces_in_its_title_and_its_banner(monkeypatch, capsys):
    course = VAE(VAEConfig(block_out_channels=(8, 8, 8, 8), norm_num_groups=4)).eval()
    monkeypatch.setattr(sd, "load_course_vae", lambda device=None: course)
    codec, _ = sd.load_sd_vae_or_course()
    assert codec.stands_in_for == "SD's VAE" and codec.title == "course VAE (in place of SD's VAE)"
    sd.banner(codec)
    line = capsys.readouterr().out
    assert line.startswith("⚠ Not SD's VAE: every panel marked 'course VAE (in place of SD's VAE)' shows the course VAE.")
    assert "HF_HUB_OFFLINE=1 is set" in line and line.count("\n") == 1
    taesd, _ = sd.load_taesd_or_course()
    assert taesd.title == "course VAE (in place of TAESD)"


def test_a_real_or_untrained_model_is_named_as_what_it_is(capsys):
    assert sd.untrained("taesd").title == "TAESD architecture, random weights"
    assert sd.untrained("taesd").stands_in_for is None
    assert sd.LatentCodec(torch.nn.Identity(), "course-vae").title == "course VAE"
    sd.banner(sd.untrained("taesd"))
    assert capsys.readouterr().out == "✓ TAESD architecture, random weights: TAESD's architecture with random weights.\n"


def test_in_jupyter_the_banner_is_a_coloured_box_with_a_plain_text_twin(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(sd, "_in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda data, raw: shown.append(data))
    codec = sd.LatentCodec(torch.nn.Identity(), "course-vae", "offline <for a test>", stands_in_for="TAESD")
    sd.banner(codec)
    (data,) = shown
    assert "#fff3cd" in data["text/html"] and "&lt;for a test&gt;" in data["text/html"]  # amber, and escaped
    assert data["text/plain"].startswith("⚠ Not TAESD: every panel marked 'course VAE (in place of TAESD)'")


def test_lesson_10s_16_channel_extra_loads_taef1_from_a_folder_or_says_it_shows_the_course_f8c16(tmp_path, monkeypatch):
    folder = tmp_path / "taef1"  # a local copy, as LATENTLAB_TAEF1 or a teacher's cache provides: TAEF1's geometry
    diffusers.AutoencoderTiny(latent_channels=16).save_pretrained(folder, safe_serialization=True)
    codec = sd.load_taef1_or_course16("cpu", source=str(folder))
    assert codec.stands_in_for is None and codec.name == "taef1" and "TAEF1" in codec.description
    assert codec.encode(torch.rand(1, 3, 64, 64) * 2 - 1).shape == (1, 16, 8, 8)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, nothing cached: the course's own 16-channel VAE
    fallback = sd.load_taef1_or_course16("cpu")
    assert fallback.stands_in_for == "TAEF1" and fallback.latent_channels == 16 and fallback.factor == 8
    assert "could not be loaded (HF_HUB_OFFLINE=1 is set), so this section shows the course's own 16-channel VAE" \
        in fallback.description
    z = fallback.encode(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert z.shape == (1, 16, 8, 8) and fallback.decode(z).shape == (1, 3, 64, 64)
