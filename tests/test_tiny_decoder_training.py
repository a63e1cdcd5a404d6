"""latentlab.tiny_decoder_training: the distillation loss, that distilling learns, and `latentlab train tiny-decoder`
(smoke run, manifest with the teacher's sha256, the recipe, refusing a teacher that is not a VAE)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from latentlab import recipes
from latentlab.checkpoints import WEIGHTS_DIR, sha256_file
from latentlab.cli import main
from latentlab.tiny_decoder import TinyDecoder
from latentlab.tiny_decoder_training import TinyDecoderTraining, cut, distill, distill_loss, scores, teach, windows
from latentlab.train_cli import SETTINGS, run_recipes
from latentlab.vae import VAE, VAEConfig

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny_decoder.toml"


class Constant(torch.nn.Module):
    """a 'decoder' that draws one grey value everywhere"""

    def __init__(self, value):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(float(value)))

    def forward(self, z):
        return self.value.expand(z.shape[0], 3, 8 * z.shape[2], 8 * z.shape[3])


def test_the_loss_aims_at_the_teacher_the_image_or_both():
    z, teacher, image = torch.zeros(2, 4, 1, 1), torch.full((2, 3, 8, 8), 0.5), torch.full((2, 3, 8, 8), -0.5)
    student = Constant(0.0)
    assert distill_loss(student, z, teacher, image, "teacher")["loss"].item() == pytest.approx(0.25)
    assert distill_loss(Constant(0.5), z, teacher, image, "teacher")["loss"].item() == 0  # it drew the teacher's
    assert distill_loss(Constant(0.5), z, teacher, image, "image")["loss"].item() == pytest.approx(1.0)
    both = distill_loss(Constant(0.25), z, teacher, image, "both")
    assert both["loss"].item() == pytest.approx(0.5 * (0.0625 + 0.5625)) and both["image"].item() == pytest.approx(0.5625)


def test_teach_gives_raw_latents_and_clamped_decodes():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(block_out_channels=(8, 8, 8, 8), norm_num_groups=4)).eval()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    latents, decoded = teach(vae, images, batch_size=2)
    with torch.no_grad():
        assert torch.allclose(latents, vae.encode(images).mode(), atol=1e-5)
        assert torch.allclose(decoded, vae.decode(latents).clamp(-1, 1), atol=1e-5)
    assert decoded.abs().max() <= 1


def test_windows_cut_the_same_place_from_latents_and_pictures():
    """a window of the latent (cells) and of the picture (pixels) cover the same region; a whole picture draws none"""
    pictures = torch.rand(3, 3, 48, 40)
    latents = torch.nn.functional.avg_pool2d(pictures, 8)  # (3, 3, 6, 5): one cell per 8x8 block
    generator = torch.Generator().manual_seed(0)
    index, rows, columns = windows(torch.tensor([2, 0, 2]), (6, 5), 2, generator)
    assert rows.max() <= 4 and columns.max() <= 3 and len(set(zip(rows.tolist(), columns.tolist()))) > 1
    assert torch.allclose(torch.nn.functional.avg_pool2d(cut(pictures[index], rows, columns, 2, 8), 8),
                          cut(latents[index], rows, columns, 2, 1))
    assert cut(pictures[index], rows, columns, 2, 8).shape == (3, 3, 16, 16)
    assert torch.equal(cut(pictures[index], rows, columns, 2, 8)[1],
                       pictures[0, :, 8 * rows[1]:8 * rows[1] + 16, 8 * columns[1]:8 * columns[1] + 16])
    state = generator.get_state()
    _, rows, columns = windows(torch.tensor([1]), (2, 2), 2, generator)  # the window is the whole picture
    assert rows.tolist() == columns.tolist() == [0] and torch.equal(generator.get_state(), state)


@pytest.mark.parametrize("teacher_crop", [None, 64])
def test_distilling_the_course_decoder_learns_it(teacher_crop, tmp_path):
    """100 quick steps on 64 crops (or 32x32 windows of 64 pictures the teacher decoded whole): the student's PSNR
    against the teacher on a held-out photo rises by several dB"""
    from latentlab.checkpoints import load_course_vae
    from latentlab.data import load_photo

    settings = TinyDecoderTraining(steps=100, batch_size=8, pool=64, crop=32, teacher_crop=teacher_crop, eval_every=100,
                                   eval_size=32, lr=3e-3, out=str(tmp_path / "t.safetensors"))
    teacher = load_course_vae("cpu")
    photo = load_photo("coffee", 64)  # a validation photo: never in the pool
    z, taught = teach(teacher, photo)
    torch.manual_seed(settings.seed)  # the student's own start
    before = scores(TinyDecoder(), z, taught, photo)["psnr_vs_teacher"]
    student, history = distill(settings, teacher)
    assert history[-1]["psnr_vs_teacher"] > 15 and history[-1]["loss"] < history[0]["loss"] / 2
    assert scores(student, z, taught, photo)["psnr_vs_teacher"] > before + 3
    assert (tmp_path / "t.safetensors").is_file()


def test_the_smoke_run_writes_weights_and_a_manifest_naming_its_teacher(tmp_path, capsys):
    shutil.copy(WEIGHTS_DIR / "vae.safetensors", tmp_path / "vae.safetensors")  # the teacher, named "vae"
    assert run_recipes([RECIPE], out_dir=tmp_path, smoke_run=True, device="cpu") == 0
    capsys.readouterr()
    m = json.loads((tmp_path / "tiny_decoder.json").read_text())
    assert m["sha256"] == sha256_file(tmp_path / "tiny_decoder.safetensors")
    assert m["teacher"]["sha256"] == sha256_file(WEIGHTS_DIR / "vae.safetensors")
    assert m["recipe"] == {"file": "recipes/tiny_decoder.toml", "stage": "tiny_decoder", "smoke": True}
    assert m["steps_done"] == 2 and m["training"]["pool"] == 4 and m["training"]["target"] == "teacher"
    assert {"psnr_vs_teacher", "psnr_vs_images", "chart_worst"} <= set(m["final"])
    settings = recipes.from_command(SETTINGS["tiny-decoder"], m["command"])  # the command reproduces the run
    assert settings.steps == 2 and settings.teacher.endswith("vae.safetensors")


def test_the_recipe_takes_the_teacher_by_name():
    (stage,) = recipes.read_recipe(RECIPE, SETTINGS)
    assert stage.settings.teacher == "vae" and stage.name == "tiny_decoder"
    assert stage.settings.threads == 1  # the recorded wall time is one thread's


def test_a_teacher_that_is_not_a_vae_is_refused_in_one_line(tmp_path, capsys):
    code = main(["train", "tiny-decoder", "--teacher", "denoiser", "--out", str(tmp_path / "t.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "is not a VAE checkpoint" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,words", [(["--target", "pixels"], "--target must be one of teacher, image, both"),
                                        (["--pool", "1", "--batch-size", "4"], "pool 1 must hold at least one batch"),
                                        (["--crop", "20"], "crop 20 must be a multiple of 8"),
                                        (["--augment", "0.3", "--dead-leaves", "0.5", "--flat-patches", "0.3"],
                                         "augment + dead_leaves + flat_patches is 1.1, more than 1"),
                                        (["--teacher-crop", "64"], "teacher_crop 64 must be a multiple of 8 and at "
                                                                   "least crop (128)")])
def test_bad_settings_are_refused_in_one_line(args, words, tmp_path, capsys):
    try:
        code = main(["train", "tiny-decoder", *args, "--out", str(tmp_path / "t.safetensors")])
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1


def test_a_shipped_tiny_decoder_imitates_the_shipped_vae():
    """when the course VAE changes, recipes/tiny_decoder.toml must run again: this fails until it has"""
    from latentlab.checkpoints import course_manifest, load_tiny_decoder, shipped

    assert "tiny_decoder" in shipped(), "the tiny decoder ships (recipes/tiny_decoder.toml); `make weights` remakes it"
    manifest = course_manifest("tiny_decoder")
    assert manifest["teacher"]["sha256"] == sha256_file(WEIGHTS_DIR / "vae.safetensors"), \
        "the shipped tiny decoder was distilled from another VAE: run recipes/tiny_decoder.toml again"
    assert load_tiny_decoder("cpu").num_parameters() == manifest["parameters"]
