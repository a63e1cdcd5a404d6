"""latentlab.formats: every format round-trips through its scale and shift and through a tiny VAE of its diffusers
class with its geometry; empty latents are zeros in the model's space and the shift in the VAE's; bad names and
sizes get one sentence; every number and pin in the table is cited in docs/formats.md."""

import re
from pathlib import Path

import diffusers
import pytest
import torch

from latentlab import formats
from latentlab.checkpoints import load_course_vae
from latentlab.errors import InputError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "formats.md"
ALL = formats.names()


def _tiny_vae(spec: formats.LatentFormat) -> torch.nn.Module:
    """a few-thousand-parameter VAE of the format's diffusers class, with its channels and factor"""
    stages = spec.factor.bit_length()  # factor 8: 4 resolutions
    torch.manual_seed(0)
    if spec.diffusers_class == "AutoencoderDC":  # its shortcuts need the last width to be the latent's
        widths = tuple(min(spec.latent_channels, 8 * 2 ** (i // 2)) for i in range(stages))
        return diffusers.AutoencoderDC(
            latent_channels=spec.latent_channels, encoder_block_out_channels=widths, decoder_block_out_channels=widths, encoder_block_types="ResBlock", decoder_block_types="ResBlock",
            encoder_layers_per_block=(1,) * stages, decoder_layers_per_block=(1,) * stages,
            encoder_qkv_multiscales=((),) * stages, decoder_qkv_multiscales=((),) * stages,
            attention_head_dim=4, scaling_factor=spec.scaling_factor).eval()
    return diffusers.AutoencoderKL(
        block_out_channels=(8,) * stages, down_block_types=("DownEncoderBlock2D",) * stages,
        up_block_types=("UpDecoderBlock2D",) * stages, latent_channels=spec.latent_channels, norm_num_groups=4,
        layers_per_block=1, scaling_factor=spec.scaling_factor, shift_factor=spec.shift_factor or None).eval()


@pytest.mark.parametrize("name", ALL)
def test_every_format_round_trips_through_a_vae_of_its_class_and_geometry(name):
    spec = formats.get(name)
    side = 2 * spec.multiple_of
    vae = _tiny_vae(spec) if name != formats.COURSE else load_course_vae("cpu")
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        out = vae.encode(images)
        raw = getattr(out, "latent_dist", getattr(out, "latent", out))
        raw = raw if isinstance(raw, torch.Tensor) else raw.mode()  # a Gaussian's mean, or DC-AE's one latent
        assert tuple(raw.shape) == spec.latent_shape(side, side, batch=2)  # the table's channels and factor are real
        z = spec.scale(raw)
        assert torch.allclose(spec.unscale(z), raw, atol=1e-5)
        back = vae.decode(spec.unscale(z))
        direct = vae.decode(raw)
    image = getattr(back, "sample", back)
    assert image.shape == images.shape and torch.allclose(image, getattr(direct, "sample", direct), atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_scale_subtracts_the_shift_first_and_empty_latents_sit_at_the_shift(name):
    spec = formats.get(name)
    empty = formats.empty_latent(name, 2 * spec.multiple_of, 3 * spec.multiple_of, batch=2)
    assert empty.shape == (2, spec.latent_channels, 2 * spec.patch_size, 3 * spec.patch_size)
    assert empty.abs().max() == 0
    raw = formats.empty_latent(name, 2 * spec.multiple_of, 3 * spec.multiple_of, batch=2, space="raw")
    assert torch.all(raw == torch.tensor(spec.shift_factor))  # zeros for the model are the shift for the decoder
    assert torch.all(spec.scale(raw) == 0)
    z = torch.full((1, spec.latent_channels, 1, 1), 2.0)
    assert torch.allclose(spec.scale(z), torch.tensor((2.0 - spec.shift_factor) * spec.scaling_factor))


def test_the_shift_matters_only_where_the_table_has_one():
    shifted = {name for name in ALL if formats.get(name).shift_factor}
    assert shifted == {"sd3", "flux1"}
    flux = formats.get("flux1")
    assert torch.allclose(flux.scale(torch.tensor([0.1159])), torch.tensor([0.0]))
    assert not torch.allclose(flux.scale(torch.tensor([1.0])), torch.tensor([0.3611]))  # not z * scale alone


def test_the_numbers_match_the_published_configs_and_diffusers_defaults():
    table = {f.name: (f.latent_channels, f.factor, f.scaling_factor, f.shift_factor) for f in formats.table()}
    assert table["sd1"] == (4, 8, 0.18215, 0.0) and table["sdxl"] == (4, 8, 0.13025, 0.0)
    assert table["sd3"] == (16, 8, 1.5305, 0.0609) and table["flux1"] == (16, 8, 0.3611, 0.1159)
    assert table["sana"] == (32, 32, 0.41407, 0.0)
    assert diffusers.AutoencoderKL().config.scaling_factor == table["sd1"][2]  # diffusers' default is SD 1.x's
    course = load_course_vae("cpu")
    assert table["course"] == (course.config.latent_channels, course.config.factor, course.scaling_factor, 0.0)


def test_values_and_tokens_at_1024_are_what_the_lesson_says():
    values = {name: formats.get(name).values(1024, 1024) for name in ALL}
    tokens = {name: formats.get(name).tokens(1024, 1024) for name in ALL}
    assert values == {"sd1": 65536, "sdxl": 65536, "sd3": 262144, "flux1": 262144, "sana": 32768, "course": 65536}
    assert tokens == {"sd1": 16384, "sdxl": 16384, "sd3": 4096, "flux1": 4096, "sana": 1024, "course": 16384}


def test_sources_are_pinned_or_say_why_not():
    for spec in formats.table():
        for source in (spec.vae, spec.tiny):
            if source is not None:
                assert re.fullmatch(r"[0-9a-f]{40}", source.revision or ""), (spec.name, source)
        if spec.vae is None and spec.name != formats.COURSE:
            assert "gated" in spec.gated, f"{spec.name}: a format without a public VAE says where it is and why"
    assert formats.get("sd3").vae is None and formats.get("flux1").vae.subfolder == "vae"


@pytest.mark.parametrize("args, words", [
    (("sd4", 64, 64), "unknown latent format 'sd4'; choose one of sd1, sdxl, sd3, flux1, sana, course."),
    (("flux1", 1000, 1024), "height 1000 is not a multiple of 16"),
    (("sana", 1024, 1000), "width 1000 is not a multiple of 32"),
    (("sd1", 0, 64), "height must be a whole number of pixels"),
    (("sd1", 64.0, 64), "height must be a whole number of pixels"),
    ((None, 64, 64), "unknown latent format None"),
])
def test_bad_names_and_sizes_get_one_sentence(args, words):
    with pytest.raises(InputError) as err:
        formats.empty_latent(*args)
    message = str(err.value)
    assert words in message and message.count(". ") == 0 and message.endswith(".")


def test_sizes_that_fit_are_accepted_near_the_ones_that_do_not():
    assert formats.empty_latent("flux1", 1008, 992).shape == (1, 16, 126, 124)
    assert formats.empty_latent("sd1", 1000, 1000).shape == (1, 4, 125, 125)  # a UNet takes any multiple of 8
    assert "use 992 or 1024" in str(pytest.raises(InputError, formats.empty_latent, "sana", 1000, 1024).value)
    with pytest.raises(InputError, match="space must be"):
        formats.empty_latent("sd1", 64, 64, space="vae")


def test_every_number_and_pin_in_the_table_is_cited_in_the_docs():
    page = DOCS.read_text()
    for spec in formats.table():
        wanted = [spec.title, str(spec.scaling_factor) if spec.name != formats.COURSE else "scaling_factor"]
        wanted += [str(spec.shift_factor)] if spec.shift_factor else []
        wanted += [s.revision for s in (spec.vae, spec.tiny) if s is not None]
        missing = [w for w in wanted if w not in page]
        assert not missing, f"docs/formats.md does not cite {missing} of {spec.name}"
