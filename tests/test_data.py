"""Training-photo pipeline: folder and tfds sources, determinism, resume, sharding, bad files."""

import shutil

import numpy as np
import pytest
import tensorflow as tf
from feedforward_helpers import mock_tfds_photos

from nst_tf import data
from nst_tf import images
from nst_tf.errors import NSTError


def write_photos(folder, count, rng, size=(40, 56)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img = rng.random((*size, 3)).astype(np.float32)
        images.save_image(str(folder / f"p{i:02d}.png"), img)
    return folder


def take(ds, n):
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def test_folder_batches_are_cropped_and_deterministic(tmp_path, rng):
    folder = write_photos(tmp_path / "photos" / "nested", 6, rng)
    config = data.PhotoDataConfig(train_dir=str(tmp_path / "photos"), image_size=32, seed=3)
    first = take(data.photo_dataset(config, batch_size=4), 4)  # 16 elements: beyond one epoch
    again = take(data.photo_dataset(config, batch_size=4), 4)
    assert first[0]["images"].shape == (4, 32, 32, 3) and first[0]["images"].dtype == np.float32
    assert 0.0 <= first[0]["images"].min() and first[0]["images"].max() <= 1.0
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["images"], b["images"])
    other_seed = take(data.photo_dataset(data.PhotoDataConfig(str(folder.parent), image_size=32, seed=4), 4), 1)
    assert not np.array_equal(first[0]["images"], other_seed[0]["images"])
    assert all((b["skipped"] == 0).all() for b in first)


def test_start_resumes_the_same_stream(tmp_path, rng):
    write_photos(tmp_path, 5, rng)
    config = data.PhotoDataConfig(train_dir=str(tmp_path), image_size=24, seed=0)
    stream = np.concatenate([b["images"] for b in take(data.photo_dataset(config, 3), 5)])
    for start in (4, 7, 11):  # mid-epoch and in later epochs
        resumed = take(data.photo_dataset(config, 2, start=start), 1)[0]["images"]
        np.testing.assert_array_equal(resumed, stream[start : start + 2])


def test_shards_split_the_stream(tmp_path, rng):
    write_photos(tmp_path, 4, rng)
    config = data.PhotoDataConfig(train_dir=str(tmp_path), image_size=24, seed=0)
    stream = take(data.photo_dataset(config, 4), 1)[0]["images"]
    shards = [take(data.photo_dataset(config, 2, num_shards=2, shard_index=i), 1)[0]["images"] for i in (0, 1)]
    np.testing.assert_array_equal(shards[0], stream[0::2])
    np.testing.assert_array_equal(shards[1], stream[1::2])


def test_corrupt_files_are_skipped_and_counted(tmp_path, assets):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in images.list_images(assets / "photos")[:7]:
        shutil.copy(path, photos)
    (photos / "zz_truncated.jpg").write_bytes((photos / sorted(p.name for p in photos.iterdir())[0]).read_bytes()[:300])
    (photos / "zz_text.png").write_text("not an image")
    config = data.PhotoDataConfig(train_dir=str(photos), image_size=64, seed=1)
    batches = take(data.photo_dataset(config, 3), 6)  # 18 good photos: two full epochs and a bit
    assert all(b["images"].shape == (3, 64, 64, 3) for b in batches)
    skipped = sum(int(b["skipped"].sum()) for b in batches)
    # 18 good photos = two whole epochs of 7 (2 bad files each) + 4 of the third,
    # whose 2 bad files may or may not come before them in its shuffle.
    assert skipped in (4, 5, 6)
    # Every epoch meets the same 2 files: the count of distinct ones says 2.
    assert sum(int(b["unreadable"].sum()) for b in batches) == 2


def test_real_photos_folder(assets):
    config = data.PhotoDataConfig(train_dir=str(assets / "photos"), image_size=128, seed=0)
    batch = take(data.photo_dataset(config, 4), 1)[0]
    assert batch["images"].shape == (4, 128, 128, 3)
    assert batch["images"].std() > 0.05  # real photos, not padding


def test_no_readable_image_is_an_error(tmp_path):
    for i in range(3):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"\xff\xd8 garbage")
    with pytest.raises(NSTError, match="no readable image among the first"):
        data.photo_dataset(data.PhotoDataConfig(train_dir=str(tmp_path)), 2)


def test_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(NSTError, match="no image files"):
        data.photo_dataset(data.PhotoDataConfig(train_dir=str(tmp_path)), 2)
    with pytest.raises(NSTError, match="no such directory"):
        data.photo_dataset(data.PhotoDataConfig(train_dir=str(tmp_path / "missing")), 2)


def test_tfds_branch_with_mock_data(rng):
    config = data.PhotoDataConfig(tfds_name="coco/2017", image_size=32, seed=0)
    with mock_tfds_photos(rng):
        batches = take(data.photo_dataset(config, 4), 3)
        resumed = take(data.photo_dataset(config, 4, start=4), 1)
    assert batches[0]["images"].shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(resumed[0]["images"], batches[1]["images"])


def test_missing_tfds_dataset_is_an_error(tmp_path):
    config = data.PhotoDataConfig(tfds_name="coco/2017", tfds_data_dir=str(tmp_path))
    with pytest.raises(NSTError, match="--tfds_name: cannot load coco/2017"):
        data.photo_dataset(config, 2)


def test_resize_shorter_side_and_helpers():
    image = tf.zeros([30, 50, 3])
    assert data.resize_shorter_side(image, 64).shape == (64, 107, 3)
    assert data.resize_shorter_side(tf.zeros([50, 30, 3]), 16).shape == (27, 16, 3)
    seed = data.element_seed(1, 5)
    ramp = tf.reshape(tf.range(2 * 8 * 3, dtype=tf.float32), [2, 8, 3])
    a, b = data.random_crop(ramp, 2, seed), data.random_crop(ramp, 2, seed)
    np.testing.assert_array_equal(a, b)
    flipped = [data.random_flip(ramp, data.element_seed(0, i)).numpy() for i in range(16)]
    assert any(np.array_equal(f, ramp.numpy()[:, ::-1]) for f in flipped)
    assert any(np.array_equal(f, ramp.numpy()) for f in flipped)
