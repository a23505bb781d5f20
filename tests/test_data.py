import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import write_cifar10_batches, write_image_folder
from kshot_bench.data import TensorLoader, cifar10_test_set, load_dataset, official_split, stratified_half
from kshot_bench.datasets import DATASETS
from kshot_bench.errors import UserError

INFO = DATASETS.get("cifar10")


def test_official_python_batches_use_the_official_split(tmp_path, shared_data):
    root = write_cifar10_batches(tmp_path)
    splits = load_dataset("cifar10", root, download=False)
    train = official_split("cifar10_train")
    assert len(train) == len(splits.train_x) == 25000 and len(splits.score_x) == 25000
    # image i has every pixel i % 256 and label i % 10 (see write_cifar10_batches)
    assert torch.equal(splits.train_x[:, 0, 0, 0], torch.as_tensor(train % 256, dtype=torch.uint8))
    assert torch.equal(splits.train_y, torch.as_tensor(train % 10))
    text = (shared_data / "nb201" / "splits" / "cifar-split.txt").read_text()
    assert text.count('"') > 0 and str(train[1]) in text[:200]
    assert "cifar-split.txt" in splits.source


def test_image_folder_seeded_half_split(tmp_path):
    root = write_image_folder(tmp_path, per_class=4, test_per_class=1)
    a = load_dataset("cifar10", root, download=False)
    assert a.train_x.shape == (20, 3, 32, 32) and a.score_x.shape == (20, 3, 32, 32)
    assert torch.equal(torch.bincount(a.train_y), torch.full((10,), 2))
    assert (root / ".kshot_cache.npz").exists()
    b = load_dataset("cifar10", root, download=False)  # from the cache
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.score_y, b.score_y)
    # pixels survive decoding (PNG is lossless)
    from PIL import Image
    first = np.array(Image.open(root / "train" / "airplane" / "0000.png"))
    all_x = torch.cat([a.train_x, a.score_x])
    assert any(torch.equal(img, torch.as_tensor(first).permute(2, 0, 1)) for img in all_x)


def test_cifar10_test_set_in_both_layouts(tmp_path):
    """The 10,000 test images (scoring_protocol's --test-images): none of them is in the supernet's splits."""
    x, y = cifar10_test_set(write_cifar10_batches(tmp_path / "batches"))
    assert x.shape == (10000, 3, 32, 32) and torch.equal(y, torch.as_tensor(np.arange(50000, 60000) % 10))
    assert torch.equal(x[:, 0, 0, 0], torch.as_tensor(np.arange(50000, 60000) % 256, dtype=torch.uint8))
    root = write_image_folder(tmp_path / "folder", per_class=2, test_per_class=1)
    x, y = cifar10_test_set(root)
    splits = load_dataset("cifar10", root, download=False)
    assert x.shape == (10, 3, 32, 32) and torch.equal(torch.sort(y).values, torch.arange(10))
    seen = torch.cat([splits.train_x, splits.score_x]).flatten(1)
    assert not (x.flatten(1)[:, None] == seen[None]).all(-1).any()
    with pytest.raises(UserError, match="no CIFAR-10 data"):
        cifar10_test_set(tmp_path / "nothing")


def test_stratified_half_is_balanced_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    a, b = stratified_half(labels, 3)
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == 500
    assert np.all(np.bincount(labels[a]) == 25)
    assert np.array_equal(a, stratified_half(labels, 3)[0]) and not np.array_equal(a, stratified_half(labels, 4)[0])


@pytest.mark.parametrize("make, words", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "no CIFAR-10 data"),
])
def test_missing_data_names_the_layouts(tmp_path, make, words):
    with pytest.raises(UserError, match=words) as err:
        load_dataset("cifar10", make(tmp_path), download=False)
    assert "cifar-10-batches-py" in str(err.value) or "--data-root" in str(err.value)


def test_a_missing_data_directory_says_what_to_pass(tmp_path):
    with pytest.raises(UserError, match="does not exist") as err:
        load_dataset("cifar10", tmp_path / "missing", download=False)
    assert "downloaded into it when online" in err.value.fix and "embedded sample" in err.value.fix
    with pytest.raises(UserError, match="does not exist") as err:
        load_dataset("ImageNet16-120", tmp_path / "missing", download=False)
    assert "downloaded" not in err.value.fix and "embedded" not in err.value.fix


def test_incomplete_batches_are_named(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(UserError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path, download=False)


def _reference_crop_flip(img, dy, dx, flip):
    padded = F.pad(img, (4, 4, 4, 4))
    out = padded[:, dy:dy + 32, dx:dx + 32]
    return out.flip(-1) if flip else out


def test_loader_augmentation_matches_per_image_reference():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(40)
    loader = TensorLoader(images, labels, INFO, 8, seed=5)
    batches = list(loader.epoch(0))
    assert len(batches) == 5
    x, y = batches[0]
    assert x.is_contiguous(memory_format=torch.channels_last) and x.dtype == torch.float32
    raw = (x * loader.inv_std.reciprocal() + loader.mean).round().clamp(0, 255).to(torch.uint8)
    for img, label in zip(raw, y):
        src = images[label]
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(_reference_crop_flip(src, dy, dx, f), img)]
        assert matches, "every output image is a padded crop (maybe flipped) of its source"


def test_loader_is_a_function_of_seed_and_epoch_and_resumes():
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(50)
    loader = TensorLoader(images, labels, INFO, 10, seed=1)
    full = list(loader.epoch(3))
    again = list(loader.epoch(3))
    tail = list(loader.epoch(3, start=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full, again))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[2:], tail))
    assert not torch.equal(full[0][1], list(loader.epoch(4))[0][1])
    seen = torch.cat([y for _, y in full]).sort().values
    assert torch.equal(seen, labels)  # drop_last with 50 / 10: every image exactly once


def test_fixed_batches_are_unaugmented():
    images = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8)
    loader = TensorLoader(images, torch.arange(30), INFO, 8, seed=0, augment=False)
    batches = loader.fixed_batches(limit=20, batch_size=8)
    assert [len(y) for _, y in batches] == [8, 8, 4]
    x = batches[0][0]
    ref = (images[:8].float() - loader.mean) * loader.inv_std
    torch.testing.assert_close(x, ref)


# ----------------------------------------------------------------------------- CIFAR-100, ImageNet16-120, ImageNet
from conftest import write_cifar100, write_imagenet16, write_imagenet_folder  # noqa: E402


def test_cifar100_official_layout_and_xvalid_split(tmp_path):
    root = write_cifar100(tmp_path)
    splits = load_dataset("cifar100", root, download=False)
    xvalid = official_split("cifar100_xvalid")
    assert len(splits.train_x) == 300 and len(splits.score_x) == len(xvalid) == 5000
    assert torch.equal(splits.score_x[:, 0, 0, 0], torch.as_tensor(xvalid % 256, dtype=torch.uint8))
    assert torch.equal(splits.score_y, torch.as_tensor(xvalid % 100))
    assert "cifar100-test-split.txt" in splits.source


def test_imagenet16_keeps_120_classes_and_uses_the_split(tmp_path):
    root = write_imagenet16(tmp_path / "in16")
    splits = load_dataset("ImageNet16-120", root, download=False)
    assert splits.train_x.shape[1:] == (3, 16, 16)
    assert int(splits.train_y.min()) >= 0 and int(splits.train_y.max()) <= 119
    xvalid = official_split("imagenet16_xvalid")
    assert len(splits.score_x) == len(xvalid) == 3000
    assert torch.equal(splits.score_y, torch.as_tensor(xvalid % 120))
    assert torch.equal(splits.score_x[:, 0, 0, 0], torch.as_tensor(xvalid % 256, dtype=torch.uint8))


def test_imagenet16_missing_files_say_where_to_get_them(tmp_path):
    root = write_imagenet16(tmp_path / "in16")
    (root / "train_data_batch_7").unlink()
    with pytest.raises(UserError, match="train_data_batch_7") as err:
        load_dataset("ImageNet16-120", root, download=False)
    assert "image-net.org" in err.value.fix


def test_cifar100_missing_and_truncated(tmp_path):
    with pytest.raises(UserError, match="no CIFAR-100 data") as err:
        load_dataset("cifar100", tmp_path, download=False)
    assert "cifar-100-python" in err.value.fix


def test_imagenet16_loader_pads_by_two():
    info = DATASETS.get("ImageNet16-120")
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    loader = TensorLoader(images, torch.arange(16), info, 8, seed=0)
    assert loader.pad == 2 and next(iter(loader.epoch(0)))[0].shape == (8, 3, 16, 16)


def test_imagenet_folder_local_split_and_loader(tmp_path):
    from kshot_bench.imagenet_data import imagenet_loader, imagenet_parts

    root = write_imagenet_folder(tmp_path / "imagenet")
    parts = imagenet_parts(root, local_val_size=6, seed=0, image_size=32)
    assert len(parts.train) == 18 and len(parts.local_val) == 6 and len(parts.test) == 6
    assert not set(parts.train.indices) & set(parts.local_val.indices)
    again = imagenet_parts(root, local_val_size=6, seed=0, image_size=32)
    assert parts.local_val.indices == again.local_val.indices
    x, y = next(iter(imagenet_loader(parts.train, 4, train=True, workers=0)))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)
    assert x.dtype == (torch.uint8 if torch.cuda.is_available() else torch.float32)  # normalised where it is cheap
    as_uint8 = imagenet_parts(root, local_val_size=6, seed=0, image_size=32, uint8=True)
    xu, _ = next(iter(imagenet_loader(as_uint8.train, 4, train=True, workers=0)))
    xv, _ = next(iter(imagenet_loader(as_uint8.test, 4, train=False, workers=0)))
    assert xu.dtype == xv.dtype == torch.uint8 and xv.shape == (4, 3, 32, 32)
    classic = imagenet_parts(root, local_val_size=6, seed=0, image_size=32, fast=False)
    xc, _ = next(iter(imagenet_loader(classic.train, 4, train=True, workers=0)))
    assert xc.dtype == torch.float32 and classic.local_val.indices == parts.local_val.indices
    with pytest.raises(UserError, match="local validation split"):
        imagenet_parts(root, local_val_size=100)
    with pytest.raises(UserError, match="no ImageNet train/"):
        imagenet_parts(tmp_path / "imagenet" / "train")


def smooth_jpeg(path, w: int = 512, h: int = 384):
    """An ImageNet-sized JPEG with photo-like smooth content (noise would make every decoder look alike)."""
    from PIL import Image

    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([128 + 100 * np.sin(xx / 37.0), 128 + 100 * np.cos(yy / 23.0), (xx + yy) % 256], -1)
    Image.fromarray(img.astype(np.uint8)).save(path, format="JPEG", quality=90)
    return path


def test_tensor_resized_crop_takes_torchvisions_crops_and_matches_its_pixels(tmp_path):
    import torchvision.transforms as T
    from PIL import Image
    from kshot_bench.imagenet_data import TensorResizedCrop, _read_bytes, normalize_batch

    path = smooth_jpeg(tmp_path / "a.JPEG")
    reference = T.Compose([T.RandomResizedCrop(64), T.RandomHorizontalFlip(), T.PILToTensor()])
    got_all, want_all = [], []
    for seed in range(12):  # the same crop and flip from the same random numbers; PIL vs tensor resize
        torch.manual_seed(seed)
        want = reference(Image.open(path).convert("RGB"))
        torch.manual_seed(seed)
        got = TensorResizedCrop(64)(_read_bytes(str(path)))
        assert got.dtype == torch.uint8 and got.shape == want.shape == (3, 64, 64)
        assert (got.float() - want.float()).abs().mean() < 2.5, seed  # of 255: one picture, two resize kernels
        got_all.append(got)
        want_all.append(want)
    # a mirrored crop is far from the reference (the comparison above can fail)
    assert (got_all[0].flip(-1).float() - want_all[0].float()).abs().mean() > 10
    # normalising the uint8 batch on the device == ToTensor + Normalize == normalising in the workers
    x = torch.stack(got_all)
    want = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(x.float() / 255)
    got = normalize_batch(x, torch.device("cpu"))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    in_worker = TensorResizedCrop(64, normalize=True)(_read_bytes(str(path)))
    torch.testing.assert_close(in_worker, want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(normalize_batch(in_worker[None], torch.device("cpu")), want[:1], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- embedded sample
def test_embedded_sample_is_real_balanced_and_small():
    from kshot_bench.resources import package_file

    splits = load_dataset("cifar10", None)
    assert splits.embedded and "embedded CIFAR-10 sample" in splits.source
    assert splits.train_x.shape == (5000, 3, 32, 32) and splits.score_x.shape == (1000, 3, 32, 32)
    assert torch.equal(torch.bincount(splits.train_y), torch.full((10,), 500))
    assert torch.equal(torch.bincount(splits.score_y), torch.full((10,), 100))
    # real photos: every image varies, and no scoring image repeats a training image
    assert (splits.train_x.float().flatten(1).std(1) > 5).all()
    train_keys = {bytes(x.numpy().tobytes()) for x in splits.train_x}
    assert not any(bytes(x.numpy().tobytes()) in train_keys for x in splits.score_x)
    folder = package_file("cifar10_sample.npz").parent
    total = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert total < 5 * 2**20, f"package data is {total / 2**20:.2f} MiB"


def test_embedded_sample_comes_from_the_folder_split(shared_data):
    """The sample's pixels are the tarball's JPEGs, training images from the image-folder loader's
    train half and scoring images from its valid half."""
    import io
    import tarfile

    from PIL import Image

    from kshot_bench.resources import package_npz

    npz = package_npz("cifar10_sample.npz")
    splits = load_dataset("cifar10", None)
    with tarfile.open(shared_data / "cifar10_images.tar.gz") as tf:
        names = sorted(m.name for m in tf.getmembers() if m.isfile() and m.name.startswith("train/"))
        classes = sorted({n.split("/")[1] for n in names})
        labels = np.array([classes.index(n.split("/")[1]) for n in names])
        train_half, valid_half = stratified_half(labels)
        position = {n: i for i, n in enumerate(names)}
        for part, half, images in (("train", train_half, splits.train_x), ("valid", valid_half, splits.score_x)):
            files = npz[f"{part}_files"]
            assert np.isin([position[f] for f in files], half).all()
            for j in (0, len(files) // 2, len(files) - 1):
                with Image.open(io.BytesIO(tf.extractfile(str(files[j])).read())) as im:
                    pixels = torch.as_tensor(np.array(im.convert("RGB"))).permute(2, 0, 1)
                assert torch.equal(images[j], pixels)


@pytest.mark.parametrize("name", ["cifar100", "ImageNet16-120"])
def test_no_data_root_is_cifar10_only(name):
    with pytest.raises(UserError, match="needs --data-root .*CIFAR-10 only"):
        load_dataset(name, None)
