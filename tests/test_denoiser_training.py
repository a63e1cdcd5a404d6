"""latentlab.denoiser_training: a class-conditional denoiser learns from labels, the unconditional one is as before."""

import pytest
import torch

from latentlab import diffusion
from latentlab.denoiser_training import DenoiserTraining, finetune_vae, train_denoiser, unet_config
from latentlab.errors import InputError
from latentlab.train import OneProcess
from latentlab.unet import UNetConfig
from latentlab.vae import VAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = UNetConfig(block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=16)


def test_the_unconditional_run_is_what_it_was_before_classes_existed():
    # recorded with the code before class labels were added (commit d286057), torch 2.13.0+cpu on x86_64, 1 thread;
    # to a tolerance, not bit for bit: CPUs with other vector instructions round differently (AVX2 vs AVX-512)
    data = torch.randn(32, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    model, history = train_denoiser(data, SMALL, steps=12, batch_size=8, seed=0, average=0.9)
    recorded = [0.8712584, 0.8220036, 0.7101189, 0.7175632, 0.873947, 0.6615404, 0.9258386, 0.7898626, 0.7696011,
                0.5963808, 0.608372, 0.7369404]
    assert [h["loss"] for h in history] == pytest.approx(recorded, abs=1e-4)
    assert sum(float(p.double().sum()) for p in model.state_dict().values()) == pytest.approx(648.5069848, abs=1e-3)


def test_a_conditional_denoiser_learns_to_tell_the_classes_apart():
    # two classes whose clean samples differ only by their sign: the label says which one to denoise towards
    g = torch.Generator().manual_seed(4)
    labels = torch.arange(64) % 2
    data = (1 - 2 * labels.float())[:, None, None, None] + 0.05 * torch.randn(64, 4, 2, 2, generator=g)
    config = UNetConfig(block_out_channels=(16, 16), norm_num_groups=4, attention_head_dim=8, num_class_embeds=3)
    model, history = train_denoiser(data, config, labels, steps=60, batch_size=16, lr=3e-3, seed=0, uncond_prob=0.2)
    acp = diffusion.alphas_cumprod(diffusion.make_betas("squaredcos_cap_v2"))
    t, noise = torch.full((8,), 900), torch.randn(8, 4, 2, 2, generator=g)
    x_t = diffusion.q_sample(torch.zeros(8, 4, 2, 2), t, noise, acp)  # half-way between the two classes
    with torch.no_grad():
        x0 = {k: diffusion.predict_x0(x_t, t, model(x_t, t, torch.full((8,), k)), acp).mean().item() for k in (0, 1)}
    assert x0[0] - x0[1] > 0.25, f"asked for +1 and -1, the model's x0 averages {x0}"
    with torch.no_grad():
        null = diffusion.predict_x0(x_t, t, model(x_t, t), acp).mean().item()  # no class: in between
    assert x0[1] < null < x0[0]  # a model blind to the label would give one number for all three


def test_labels_and_the_model_must_agree():
    data, labels = torch.zeros(16, 4, 4, 4), torch.arange(16) % 4
    conditional = UNetConfig(block_out_channels=(16, 16), norm_num_groups=4, attention_head_dim=8, num_class_embeds=5)
    with pytest.raises(InputError, match="pass the data's labels"):
        train_denoiser(data, conditional, steps=1, batch_size=8)
    with pytest.raises(InputError, match="the UNet is unconditional"):
        train_denoiser(data, SMALL, labels, steps=1, batch_size=8)
    with pytest.raises(InputError, match="knows classes 0 to 3"):
        train_denoiser(data, conditional, labels + 1, steps=1, batch_size=8)
    with pytest.raises(InputError, match="16 whole numbers"):
        train_denoiser(data, conditional, labels[:8], steps=1, batch_size=8)
    model, _ = train_denoiser(data, None, labels, steps=1, batch_size=8)  # no config: one class entry per label + 1
    assert model.config.num_class_embeds == 5


def test_the_classes_setting_builds_a_conditional_unet_and_guidance_needs_it():
    assert unet_config(DenoiserTraining(vae="vae")).num_class_embeds is None
    assert unet_config(DenoiserTraining(vae="vae", classes=True)).num_class_embeds == 5  # four shapes + "no class"
    with pytest.raises(InputError, match="set classes to yes"):
        DenoiserTraining(vae="vae", guidance=2.0)
    with pytest.raises(InputError, match="uncond_prob must be a fraction between 0 and 1"):
        DenoiserTraining(vae="vae", classes=True, uncond_prob=1.5)


def test_the_unet_takes_the_latent_of_the_vae_it_denoises_for():
    settings = DenoiserTraining(vae="vae", image_size=64)
    assert (unet_config(settings).in_channels, unet_config(settings).sample_size) == (4, 8)  # the course VAE
    assert (unet_config(settings, (16, 4)).in_channels, unet_config(settings, (16, 4)).sample_size) == (16, 16)
    assert unet_config(DenoiserTraining(space="pixel"), (16, 4)).in_channels == 3  # pixels have no VAE geometry
    with pytest.raises(InputError, match="image_size 40 must be a multiple of the VAE's factor 16"):
        unet_config(DenoiserTraining(vae="vae", image_size=40), (4, 16))


class _Rank(OneProcess):
    """process `process_index` of two, run alone: the batches and the noise it would draw, no gradient averaging"""

    def __init__(self, rank: int):
        super().__init__("cpu")
        self.process_index, self.num_processes, self.is_main_process = rank, 2, rank == 0


def _tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4))


def test_finetune_vae_on_two_processes_splits_every_draw_and_agrees_on_the_scaling_factor():
    images = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    alone, firsts = [], []
    finetune_vae(_tiny_vae(), images, steps=1, batch_size=4, seed=0, first_items=alone)
    for rank in (0, 1):
        firsts.append([])
        finetune_vae(_tiny_vae(), images, steps=1, batch_size=4, seed=0, accelerator=_Rank(rank),
                     first_items=firsts[-1])
    assert len(firsts[0]) == len(firsts[1]) == len(alone) == 4
    assert firsts[0] != firsts[1]  # each its own part of the step's 2 x 4 draws, not the same batch twice
    # the scaling factor is measured by every process on the same images with the same noise: equal weights, one
    # factor (with no step taken, the weights are equal here too)
    factors = [finetune_vae(_tiny_vae(), images, steps=0, seed=0, accelerator=_Rank(rank))[0].config.scaling_factor
               for rank in (0, 1)]
    assert factors[0] == factors[1]


def test_the_folder_is_refused_with_classes_and_its_pool_is_its_first_crops(tmp_path):
    with pytest.raises(InputError, match="a folder has no labels"):
        DenoiserTraining(vae="vae", data=str(tmp_path), classes=True)
    from PIL import Image

    from latentlab.denoiser_job import training_images
    from latentlab.sources import FolderCrops

    Image.new("RGB", (40, 32), (230, 20, 20)).save(tmp_path / "red.png")
    settings = DenoiserTraining(vae="vae", data=str(tmp_path), num_images=6, batch_size=2, image_size=16)
    folder = FolderCrops(settings.data, 16, 6, seed=0)
    images, labels = training_images(settings, folder)
    assert labels is None and images.shape == (6, 3, 16, 16)
    assert torch.equal(images, torch.stack([folder[i] for i in range(6)]))  # the same pool on every process
    assert images.mean((0, 2, 3)).tolist() == pytest.approx([230 / 127.5 - 1, 20 / 127.5 - 1, 20 / 127.5 - 1], abs=0.02)
    shapes, shape_labels = training_images(DenoiserTraining(vae="vae", num_images=6, batch_size=2, classes=True), None)
    assert shapes.shape == (6, 3, 64, 64) and shape_labels is not None
