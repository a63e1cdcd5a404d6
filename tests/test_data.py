import pytest
import torch

from latentlab import data
from latentlab.errors import InputError


def test_train_and_heldout_photos_are_disjoint_and_load_offline():
    assert not set(data.TRAIN_PHOTOS) & set(data.HELDOUT_PHOTOS)
    assert not set(data.CHECK_PHOTOS) & (set(data.TRAIN_PHOTOS) | set(data.HELDOUT_PHOTOS))
    for name in data.PHOTOS:
        x = data.load_photo(name)
        assert x.ndim == 4 and x.shape[:2] == (1, 3) and -1 <= x.min() and x.max() <= 1


def test_photo_crops_are_deterministic_and_seeded():
    a = data.PhotoCrops(size=32, length=20, seed=0)
    b = data.PhotoCrops(size=32, length=20, seed=0)
    c = data.PhotoCrops(size=32, length=20, seed=1)
    assert a[3].shape == (3, 32, 32)
    assert torch.equal(a[3], b[3])
    assert not torch.equal(a[3], c[3])
    assert not torch.equal(a[3], a[4])


def test_heldout_images_shape():
    x = data.heldout_images(64)
    assert x.shape == (len(data.HELDOUT_PHOTOS), 3, 64, 64)


def test_heldout_crops_come_only_from_heldout_photos():
    ds = data.PhotoCrops(size=32, split="heldout", length=4)
    assert ds.names == data.HELDOUT_PHOTOS


def test_shapes_are_deterministic_labelled_and_distinct():
    x, y = data.shapes_batch(64, size=32, seed=0)
    x2, y2 = data.shapes_batch(64, size=32, seed=0)
    assert x.shape == (64, 3, 32, 32) and torch.equal(x, x2) and torch.equal(y, y2)
    assert set(y.tolist()) == set(range(len(data.Shapes.CLASSES)))
    assert -1 <= x.min() and x.max() <= 1
    # the shape covers a real part of the image: the foreground colour differs from the corner's background
    differs = (x - x[:, :, :1, :1]).abs().sum(1) > 0.05
    assert (differs.flatten(1).float().mean(1) > 0.03).all()


def test_batches_yield_full_batches_of_images():
    it = data.batches(data.Shapes(size=16, length=10), batch_size=4)
    first = next(it)
    assert first.shape == (4, 3, 16, 16)


@pytest.mark.parametrize("kwargs, words", [({"size": 30}, "multiple of 8"), ({"split": "test"}, "split")])
def test_bad_dataset_arguments(kwargs, words):
    with pytest.raises(InputError, match=words):
        data.PhotoCrops(**kwargs)


def test_unknown_photo():
    with pytest.raises(InputError, match="choose one of"):
        data.load_photo("mona_lisa")


def test_cifar_offline_says_so_in_one_sentence():
    with pytest.raises(InputError) as err:
        data.cifar10(root="/nonexistent-latentlab-cache")
    assert "offline" in str(err.value) or "torchvision" in str(err.value)


def test_batches_larger_than_the_dataset_are_refused_at_once_instead_of_hanging():
    with pytest.raises(InputError, match="batch_size 16 is larger than the dataset's 8 items"):
        data.batches(data.PhotoCrops(size=32, length=8), 16)  # once looped forever, yielding nothing
    with pytest.raises(InputError, match="batch_size must be a whole number of at least 1"):
        data.batches(data.Shapes(size=16, length=8), 0)
    assert next(data.batches(data.Shapes(size=16, length=8), 8)).shape == (8, 3, 16, 16)  # exactly the dataset


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: data.load_photo("coffee", 0), "size (pixels) must be a whole number of at least 1, not 0"),
        (lambda: data.heldout_images(0), "size (pixels) must be a whole number of at least 1, not 0"),
        (lambda: data.shapes_batch(0), "n (images) must be a whole number of at least 1, not 0"),
        (lambda: data.shapes_batch(4, size=8), "at least 16 pixels"),
        (lambda: data.PhotoCrops(size=32, scale=(2, 3)), "0 < low <= high <= 1"),
        (lambda: data.PhotoCrops(size=32, scale=(0.5, 0.2)), "0 < low <= high <= 1"),
        (lambda: data.PhotoCrops(size=32, length=0), "length (crops per epoch)"),
        (lambda: data.Shapes(length=-1), "length (images per epoch)"),
    ],
)
def test_api_misuse_gets_one_sentence(call, words):
    with pytest.raises(InputError) as err:
        call()
    message = str(err.value)
    assert words in message and "\n" not in message and message.endswith(".")


def test_grace_hopper_goes_through_the_one_loader_and_is_unchanged():
    import matplotlib.cbook
    import matplotlib.pyplot as plt

    expected = plt.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    assert (data._photo_array("grace_hopper") == expected).all()  # the same pixels the shipped VAE trained on


def test_batches_of_several_processes_are_the_parts_of_one_process_batch():
    """two processes share one order and split every global batch: together they see what one process would"""
    items = torch.arange(40, dtype=torch.float32)[:, None, None, None].expand(40, 3, 1, 1)
    batches = data.batches
    one = batches(items, 4, seed=3)
    seen = [[], []]
    parts = [batches(items, 2, seed=3, process=p, processes=2, first_items=seen[p]) for p in (0, 1)]
    for _ in range(15):  # past an epoch's end
        whole = next(one)
        assert torch.equal(torch.cat([next(parts[0]), next(parts[1])]), whole)
    assert seen[0] and seen[1] and not set(seen[0]) & set(seen[1])  # different items from the first batch on
    with pytest.raises(InputError, match="batch_size 16 x 3 processes is larger than the dataset's 40 items"):
        batches(items, 16, processes=3)
    resumed = batches(items, 4, seed=3, start=7)
    assert not torch.equal(next(resumed), next(batches(items, 4, seed=3)))  # a resumed run draws its order afresh
