"""tf.data input pipelines for training.

Training photos (the content images of the feed-forward and arbitrary-style
trainers) come from tfds ``coco/2017``, the papers' dataset, or from any folder
of images; the arbitrary-style trainer pairs each photo with a painting from
folders of paintings (:func:`content_style_dataset`). The
pipeline is a pure function of ``(seed, start)``: element ``i`` of the
endless, shuffled stream always gets the same photo and the same random crop,
so a resumed run continues with exactly the batches it would have seen
(see ``nst_tf.training.base``, which checkpoints the position).

Unreadable files (corrupt, truncated, a format TensorFlow cannot decode, or a
header declaring more than :data:`nst_tf.images.MAX_PIXELS` pixels, refused before
decoding) are dropped by ``ignore_errors`` and counted. Every element carries
``skipped``, how many source elements were dropped just before it (which moves the
resumable input position), and ``unreadable``, how many of those were in the first
epoch: every epoch meets the same bad files, so the first epoch's are the distinct
ones. The trainer sums ``unreadable`` into a ``data/skipped_files`` TensorBoard
scalar and its result line.

Every source (the photo folder or tfds split, each CycleGAN domain) is refused up
front when none of its first files is readable: ``ignore_errors`` would otherwise
spin on it for ever.

Photos are decoded as ``nst-stylize`` loads them, upright by their EXIF orientation
(:func:`nst_tf.images.decode_image_tensor`); the resize / crop / flip helpers
are shared by the CycleGAN data code.
"""

import contextlib
import dataclasses
import fnmatch
import functools
import os
import sys
from typing import Callable
from typing import NamedTuple
from typing import Optional

import tensorflow as tf

from nst_tf import images
from nst_tf.config import option
from nst_tf.errors import NSTError

# tfds elements are whole encoded photos (~160 kB for COCO): a few hundred MB of
# shuffle buffer. Folder sources are permuted by index, so they shuffle fully.
TFDS_SHUFFLE_BUFFER = 1000
PROBE_FILES = 20


@dataclasses.dataclass
class PhotoDataConfig:
    """Where the training photos come from and how they are cropped."""

    train_dir: Optional[str] = option(
        None, "Folder of training photos (searched recursively); without it the photos come from tfds --tfds_name."
    )
    tfds_name: str = option("coco/2017", "tfds dataset of training photos (when no --train_dir).")
    tfds_data_dir: Optional[str] = option(None, "tfds data dir (default: tfds' own, ~/tensorflow_datasets).")
    tfds_split: str = option("train", "tfds split to train on.")
    image_size: int = option(256, "Training crop size in pixels.", min=32)
    load_size: Optional[int] = option(
        None, "Resize the shorter side to this before the random crop (default: --image_size).", min=32
    )
    seed: int = option(0, "Seed of the photo order and crops.")

    def __post_init__(self):
        if self.load_size is not None and self.load_size < self.image_size:
            raise NSTError(f"--load_size: must be >= --image_size ({self.image_size}), not {self.load_size}")


# ----------------------------------------------------------------- image helpers


def resize_shorter_side(image, side):
    """Resize [H, W, C] so the shorter side is ``side`` (antialiased bilinear), keeping the aspect."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(side, tf.float32) / tf.reduce_min(shape)
    # ceil keeps the shorter side at least `side`, so a side x side crop always fits.
    size = tf.cast(tf.math.ceil(shape * scale - 1e-3), tf.int32)
    size = tf.maximum(size, side)
    return tf.image.resize(image, size, method="bilinear", antialias=True)


def element_seed(seed, index):
    """The stateless-RNG seed of stream element ``index``: its randomness never depends on history."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])


def random_crop(image, size, seed):
    """A ``size`` x ``size`` crop at a position drawn from the stateless ``seed``."""
    return tf.image.stateless_random_crop(image, [size, size, tf.shape(image)[-1]], seed=seed)


def resize_and_crop(image, config, seed):
    """The training crop of ``config`` (:class:`PhotoDataConfig`): the shorter side resized to
    ``load_size`` (default ``image_size``), then an ``image_size`` square at a random position."""
    image = resize_shorter_side(image, int(config.load_size or config.image_size))
    return random_crop(image, int(config.image_size), seed)


def random_flip(image, seed):
    """Left-right flip with probability 1/2, drawn from the stateless ``seed``."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


# ----------------------------------------------------------------- photo pipeline


class PhotoSource(NamedTuple):
    """Where the photos come from: a fixed-order listing and the shuffled endless stream."""

    items: tf.data.Dataset  # finite, fixed order (used to probe readability)
    stream: Callable[[int], tf.data.Dataset]  # start -> endless (index, item), shuffled
    to_bytes: Callable[[tf.Tensor], tf.Tensor]  # item -> encoded image bytes
    count: int  # items per epoch: stream elements [0, count) are each item once


def _count(items):
    """The number of elements of a finite dataset: prepared tfds splits know it, mock ones may not."""
    count = int(items.cardinality())
    return count if count >= 0 else int(items.reduce(0, lambda n, _: n + 1))


def _tfds_encoded_images(name, split, data_dir, folder_flag):
    """The still-encoded ``image`` feature of a prepared tfds split.

    ``download=False``: COCO is tens of gigabytes, so preparing it is an
    explicit ``tfds build`` rather than a side effect of starting a run.
    """
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    try:
        ds = tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            download=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except Exception as exc:  # tfds raises assorted types for a missing dataset
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NSTError(
            f"--tfds_name: cannot load {name}:{split} ({first_line}); "
            f"prepare it with `tfds build {name}` or pass {folder_flag}=FOLDER"
        ) from None
    return ds.map(lambda example: example["image"])


def _folder_source(paths, seed):
    """The :class:`PhotoSource` of a list of image files, in an order fixed by ``seed``."""
    count = len(paths)
    table = tf.constant(paths)

    def path_at(index):
        # A stateless permutation per epoch: any stream position is computed
        # directly, so resuming far into training costs nothing.
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), index // count])
        order = tf.random.experimental.index_shuffle(index % count, seed=epoch_seed, max_index=count - 1)
        return index, tf.gather(table, order)

    def stream(start):
        return tf.data.Dataset.range(start, 2**62).map(path_at)

    return PhotoSource(tf.data.Dataset.from_tensor_slices(table), stream, tf.io.read_file, count)


def _tfds_source(config, folder_flag):
    # Keep the photos encoded until after the shuffle, skip and shard: those
    # stages then move bytes, and only the photos used get decoded.
    items = _tfds_encoded_images(config.tfds_name, config.tfds_split, config.tfds_data_dir, folder_flag)

    def stream(start):
        # Records can only be read in order, so a resumed run re-reads (but
        # does not decode) the records before its position. Shuffled before the
        # repeat, each epoch is a permutation of all the items.
        shuffled = items.shuffle(TFDS_SHUFFLE_BUFFER, seed=config.seed, reshuffle_each_iteration=True)
        return shuffled.repeat().enumerate().skip(start)

    return PhotoSource(items, stream, tf.identity, _count(items))


def _check_readable(items, to_bytes, where, probes=PROBE_FILES):
    """Raise NSTError now if none of the first ``probes`` of ``items`` decodes.

    Every pipeline drops unreadable files with ``ignore_errors``, which would spin
    for ever on a source with no readable image at all, without a batch or a
    message. ``to_bytes`` maps an item (a path, an encoded image) to its bytes.
    """
    for item in items.take(probes):
        try:
            with _native_stderr_muted():
                images.decode_image_tensor(to_bytes(item))
            return
        except tf.errors.OpError:
            continue
    probed = min(probes, _count(items.take(probes)))
    raise NSTError(f"{where}: no readable image among the first {probed} (or the source is empty)")


@contextlib.contextmanager
def _native_stderr_muted():
    """File descriptor 2 on /dev/null: libjpeg prints its errors there itself ("Improper call to
    JPEG library in state 201"), around the error TensorFlow raises, which is all the probe needs."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def photo_source(config, folder_flag="--train_dir"):
    """The :class:`PhotoSource` of ``config``.

    Raises NSTError up front for a missing or empty folder, a missing tfds
    dataset, or a source whose first images are all unreadable; a command whose
    flag for ``train_dir`` has another name gives it as ``folder_flag``.
    """
    if config.train_dir:
        where = f"{folder_flag}: {config.train_dir}"
        if not os.path.isdir(config.train_dir):
            raise NSTError(f"{where}: no such directory")
        paths = images.list_images(config.train_dir)
        if not paths:
            raise NSTError(f"{where}: no image files found")
        source = _folder_source(paths, config.seed)
    else:
        source, where = _tfds_source(config, folder_flag), f"--tfds_name: {config.tfds_name}"
    _check_readable(source.items, source.to_bytes, where)
    return source


def photo_dataset(config, batch_size, start=0, num_shards=1, shard_index=0):
    """Endless batches ``{"images": [B, S, S, 3] in [0, 1], "skipped": [B], "unreadable": [B] int64}``.

    Args:
      config: a :class:`PhotoDataConfig`.
      batch_size: photos per batch (per replica when sharded).
      start: index of the first stream element: a resumed run's input position.
      num_shards, shard_index: this input pipeline's share of the stream
        (every ``num_shards``-th element), as ``tf.distribute.InputContext`` gives.
    """
    source = photo_source(config)

    def load(index, item):
        image = images.decode_image_tensor(source.to_bytes(item))
        return index, {"images": resize_and_crop(image, config, element_seed(config.seed, index))}

    return _batches(source.stream(start), load, batch_size, start, num_shards, shard_index, source.count)


def _batches(stream, load, batch_size, start, num_shards, shard_index, count):
    """Batches of ``load(index, *item)`` (a dict) over this shard of ``stream`` (``(index, *item)``
    from ``start``), the unreadable elements dropped and counted in ``"skipped"``; those of the
    first epoch (``count`` elements) also in ``"unreadable"``, so each bad file counts once."""

    def count_skipped(previous, element):
        # Consecutive survivors of this shard are num_shards apart in the stream:
        # the dropped ones are previous + k * num_shards, k = 1 .. skipped, and
        # those below ``count`` (the first epoch) are files not dropped before.
        index, values = element
        skipped = (index - previous) // num_shards - 1
        first_epoch = tf.maximum((count - previous - 1) // num_shards, 0)
        return index, {**values, "skipped": skipped, "unreadable": tf.minimum(skipped, first_epoch)}

    ds = stream.shard(num_shards, shard_index)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors()
    ds = ds.scan(tf.constant(start + shard_index - num_shards, tf.int64), count_skipped)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _per_pipeline(dataset, global_batch_size):
    """A ``tf.distribute`` dataset function: ``dataset(batch_size, num_shards=, shard_index=)``
    with the replica's share of ``global_batch_size`` and the input pipeline's shard."""

    def dataset_fn(input_context):
        return dataset(
            input_context.get_per_replica_batch_size(global_batch_size),
            num_shards=input_context.num_input_pipelines,
            shard_index=input_context.input_pipeline_id,
        )

    return dataset_fn


def photo_dataset_fn(config, global_batch_size, start=0):
    """A ``tf.distribute`` dataset function: one :func:`photo_dataset` per input pipeline."""
    return _per_pipeline(functools.partial(photo_dataset, config, start=start), global_batch_size)


# ----------------------------------------------------------------- photos and paintings (AdaIN)

# The paintings' order and crops are drawn from the run's seed plus this, apart from the photos'.
STYLE_SEED_OFFSET = 1


def style_files(folders, exclude=()):
    """The sorted image files under ``folders`` (each searched recursively), without those whose
    file name matches one of the ``exclude`` glob patterns (``the_scream.jpg``, ``*_test.*``).

    NSTError for a missing folder, a pattern that matches no file (a typo would otherwise
    train on the painting it meant to keep out), no file left, or none of the first
    :data:`PROBE_FILES` readable.
    """
    if not folders:
        raise NSTError("--style_dir: give at least one folder of paintings")
    paths = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise NSTError(f"--style_dir: {folder}: no such directory")
        paths += images.list_images(folder)
    for pattern in exclude:
        if not any(fnmatch.fnmatch(os.path.basename(p), pattern) for p in paths):
            raise NSTError(f"--style_exclude: {pattern!r} matches no painting under --style_dir")
    kept = sorted(p for p in dict.fromkeys(paths) if not any(fnmatch.fnmatch(os.path.basename(p), e) for e in exclude))
    if not kept:
        raise NSTError(f"--style_dir: no image files found in {', '.join(folders)}")
    paintings = _folder_source(kept, 0)
    _check_readable(paintings.items, paintings.to_bytes, f"--style_dir: {', '.join(folders)}")
    return kept


# The flag of the arbitrary-style trainer's photo folder (PhotoDataConfig.train_dir).
CONTENT_FOLDER_FLAG = "--content_dir"


def content_style_dataset(config, style_paths, batch_size, start=0, num_shards=1, shard_index=0):
    """Endless batches ``{"content": [B, S, S, 3], "style": [B, S, S, 3], "skipped": [B], "unreadable": [B]}``.

    Element ``i`` pairs photo ``i`` of :func:`photo_dataset`'s stream (same photo, same crop)
    with painting ``i`` of a stream of ``style_paths`` (:func:`style_files`) in its own order, each epoch a fresh
    permutation; both get :func:`resize_and_crop`. Huang & Belongie's preprocessing is
    ``load_size=512, image_size=256``. A pair with an unreadable photo or painting is dropped
    and counted, so ``start`` resumes exactly, as in :func:`photo_dataset`.
    """
    photos = photo_source(config, CONTENT_FOLDER_FLAG)
    paintings = _folder_source(list(style_paths), config.seed + STYLE_SEED_OFFSET)

    def load(index, item, style_path):
        seed = element_seed(config.seed, index)
        photo = images.decode_image_tensor(photos.to_bytes(item))
        painting = images.decode_image_tensor(tf.io.read_file(style_path))
        return index, {
            "content": resize_and_crop(photo, config, seed),
            "style": resize_and_crop(painting, config, tf.random.experimental.stateless_fold_in(seed, 1)),
        }

    # Both streams count from ``start``, so their elements pair up by index.
    pairs = tf.data.Dataset.zip(photos.stream(start), paintings.stream(start))
    pairs = pairs.map(lambda photo, painting: (photo[0], photo[1], painting[1]))
    return _batches(pairs, load, batch_size, start, num_shards, shard_index, photos.count)


def content_style_dataset_fn(config, style_paths, global_batch_size, start=0):
    """A ``tf.distribute`` dataset function: one :func:`content_style_dataset` per input pipeline."""
    return _per_pipeline(functools.partial(content_style_dataset, config, style_paths, start=start), global_batch_size)


# ----------------------------------------------------------------- unpaired data (CycleGAN)

UNPAIRED_DOMAINS = ("A", "B")


@dataclasses.dataclass
class UnpairedDataConfig:
    """Two unpaired image domains, as the CycleGAN authors lay them out.

    ``data_dir`` holds ``trainA``, ``trainB``, ``testA`` and ``testB`` folders;
    otherwise ``tfds_name`` (``cycle_gan/monet2photo``, ...) has those splits.
    Training images are resized to ``load_size`` squared (ignoring the aspect,
    as the authors do), randomly cropped to ``image_size`` and randomly flipped;
    test images get a plain resize to ``image_size``. Images are RGB in [-1, 1].
    """

    data_dir: Optional[str] = option(
        None, "Folder with trainA, trainB, testA, testB (the authors' layout); wins over tfds."
    )
    tfds_name: str = option("cycle_gan/monet2photo", "tfds dataset with trainA/trainB/testA/testB splits.")
    tfds_data_dir: Optional[str] = option(None, "tfds data folder (default: tfds' own).")
    image_size: int = option(256, "Training crop size (the paper: 256).", min=32)
    load_size: int = option(286, "Resize to this square before the random crop (286).", min=32)
    max_train_images: int = option(0, "Use only the first N training images of each domain (0: all).", min=0)
    seed: int = option(0, "Seed of the crops, flips and data order.")


def _domain_source(config, split, limit=0):
    """``(finite dataset of items, count, item -> encoded bytes)`` of one split (``trainA``, ``testB``, ...).

    ``limit`` > 0 keeps only the first ``limit`` items. NSTError if the split is
    missing, empty, or has no readable image among its first (:func:`_check_readable`).
    """
    if config.data_dir:
        folder = os.path.join(config.data_dir, split)
        if not os.path.isdir(folder):
            raise NSTError(f"--data_dir: {config.data_dir}: no {split} folder (expected trainA, trainB, testA, testB)")
        paths = images.list_images(folder)
        if not paths:
            raise NSTError(f"--data_dir: {folder}: no image files (empty domain)")
        items, count, to_bytes = tf.data.Dataset.from_tensor_slices(paths), len(paths), tf.io.read_file
        where = f"--data_dir: {folder}"
    else:
        items = _tfds_encoded_images(config.tfds_name, split, config.tfds_data_dir, "--data_dir")
        count, to_bytes, where = _count(items), tf.identity, f"--tfds_name: {config.tfds_name}:{split}"
        if count == 0:
            raise NSTError(f"--tfds_name: {config.tfds_name}:{split} is empty")
    if limit:
        # The same subset every epoch and after a resume: the first N in source order.
        items, count = items.take(limit), min(count, limit)
    _check_readable(items, to_bytes, where)
    return items, count, to_bytes


def unpaired_counts(config):
    """``{"A": n, "B": n}``: training images per domain after ``max_train_images``."""
    return {domain: _domain_source(config, "train" + domain, config.max_train_images)[1] for domain in UNPAIRED_DOMAINS}


def _domain_stream(config, domain, start, num_shards, shard_index):
    source, count, to_bytes = _domain_source(config, "train" + domain, config.max_train_images)
    buffer = min(count, TFDS_SHUFFLE_BUFFER) if not config.data_dir else count
    salt = UNPAIRED_DOMAINS.index(domain) + 1

    def load(index, item):
        seed = element_seed(config.seed * 2 + salt, index)
        image = images.decode_image_tensor(to_bytes(item))
        image = tf.image.resize(image, [config.load_size, config.load_size], antialias=True)
        image = random_crop(image, config.image_size, seed)
        image = random_flip(image, tf.random.experimental.stateless_fold_in(seed, 1))
        return image * 2.0 - 1.0

    # A fixed Python seed makes the sequence of epoch orders the same in every
    # run; resuming skips the items (names or encoded bytes) already used.
    ds = source.shuffle(buffer, seed=config.seed * 2 + salt, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate().skip(start).shard(num_shards, shard_index)
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()


def unpaired_dataset(config, batch_size, start=0, num_shards=1, shard_index=0):
    """Endless batches ``{"a": [B, S, S, 3], "b": [B, S, S, 3]}`` in [-1, 1], unpaired.

    Each domain is its own endless, reshuffled stream, fixed by the seed; the
    crop and flip of element ``i`` come from a stateless seed ``(seed, i)``.
    So ``start`` (images already consumed per domain: step x global batch)
    resumes exactly where a run stopped.
    An unreadable file is dropped, which shifts its domain's stream by one.
    """
    streams = [_domain_stream(config, d, start, num_shards, shard_index) for d in UNPAIRED_DOMAINS]
    ds = tf.data.Dataset.zip(tuple(streams)).map(lambda a, b: {"a": a, "b": b})
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def unpaired_test_images(config, domain, count):
    """The first ``count`` test images of ``domain`` (source order), resized to ``image_size``: [N, S, S, 3] in [-1, 1].

    A ``data_dir`` without a ``test<domain>`` folder falls back to the training images.
    """
    split = "test" + domain
    if config.data_dir and not os.path.isdir(os.path.join(config.data_dir, split)):
        split = "train" + domain
    source, _, to_bytes = _domain_source(config, split)
    size = [config.image_size, config.image_size]
    ds = source.take(count).map(
        lambda item: tf.image.resize(images.decode_image_tensor(to_bytes(item)), size, antialias=True)
    )
    batch = list(ds.ignore_errors().batch(count).take(1))
    if not batch:
        raise NSTError(f"test{domain}: no readable test images")
    return batch[0] * 2.0 - 1.0
