"""The ODG converter against the plain float-canvas oracle in odg_oracle.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imagenet_synth import PHOTOS, photo, synthetic
from odg_oracle import odg, torch_nearest

from neurodata_cli.datasets.es_imagenet import odg as fast

THRESHOLDS = [0.18, 0.01, 0.1, 46 / 255, 0.2, 0.5, 0.9]
PATHS = [pytest.param(fast.convert, id="c"), pytest.param(fast.convert_numpy, id="numpy")]


def assert_same(events: fast.Events, rgb: np.ndarray, threshold: float = 0.18) -> None:
    pos, neg, h, w = odg(rgb, threshold)
    assert (events.height, events.width) == (h, w)
    np.testing.assert_array_equal(events.polarity(True), pos)
    np.testing.assert_array_equal(events.polarity(False), neg)


def test_the_c_path_is_built():
    # Without it everything still works, only slower; the wheel we test must have it.
    assert fast._convert_c is not None


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_sign_table_equals_float32_differences_for_every_value_pair(threshold):
    table = fast.sign_table(threshold)
    thr = np.float32(threshold)
    for a in range(256):
        for b in range(0, 256, 1):
            d = np.float32(a) / np.float32(255) - np.float32(b) / np.float32(255)
            want = 1 if d > thr else (-1 if d < -thr else 0)
            assert table[a, b] == want, (a, b, threshold)


@pytest.mark.parametrize("n_in", [1, 2, 3, 7, 100, 127, 253, 254, 255, 333, 500, 1411, 4000])
@pytest.mark.parametrize("n_out", [1, 2, 50, 127, 190, 254])
def test_nearest_index_is_torchs(n_in, n_out):
    assert fast.nearest_index(n_in, n_out).tolist() == torch_nearest(n_in, n_out)


@pytest.mark.parametrize(("h0", "w0", "h", "w"), [
    (375, 500, 190, 254), (500, 375, 254, 190), (512, 512, 254, 254), (1, 1, 254, 254),
    (1, 300, 0, 254), (127, 127, 254, 254), (3, 5, 152, 254),
])
def test_resized_shape_truncates_as_the_reference(h0, w0, h, w):
    assert fast.resized_shape(h0, w0) == (h, w)


@pytest.mark.parametrize("convert", PATHS)
@pytest.mark.parametrize("name", PHOTOS)
def test_real_photographs_match_the_oracle_event_for_event(convert, name):
    rgb = np.asarray(photo(name).convert("RGB"))
    events = convert(rgb)
    assert len(events) > 1000
    assert_same(events, rgb)


@pytest.mark.parametrize("convert", PATHS)
@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_thresholds_match_the_oracle(convert, threshold):
    rgb = np.asarray(photo("coffee.png").convert("RGB"))
    assert_same(convert(rgb, threshold), rgb, threshold)


@pytest.mark.parametrize("convert", PATHS)
@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (1, 2), (1, 300), (3, 5), (127, 254),
                                   (254, 127), (254, 254), (240, 320), (600, 90), (17, 4000)])
def test_odd_shapes_match_the_oracle(convert, shape):
    rgb = np.asarray(synthetic(sum(shape), (shape[1], shape[0])))
    assert_same(convert(rgb), rgb)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 60), w=st.integers(1, 60), seed=st.integers(0, 2**16),
       threshold=st.sampled_from(THRESHOLDS))
def test_random_images_match_the_oracle(h, w, seed, threshold):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    events = fast.convert(rgb, threshold)
    assert_same(events, rgb, threshold)
    numpy_events = fast.convert_numpy(rgb, threshold)
    for name in ("row", "col", "t", "p"):
        np.testing.assert_array_equal(getattr(events, name), getattr(numpy_events, name))


def test_flat_image_has_no_events_and_order_is_by_t_then_polarity():
    assert len(fast.convert(np.full((50, 80, 3), 200, np.uint8))) == 0
    events = fast.convert(np.asarray(photo("chelsea.png").convert("RGB")))
    key = events.t.astype(int) * 2 + (1 - events.p)
    assert np.all(np.diff(key) >= 0)
    assert set(np.unique(events.t)) == set(range(1, 9))
    assert events.row.min() > 16 and events.row.max() < 240
    assert events.col.min() > 16 and events.col.max() < 240


def test_integer_cutoffs_are_used_only_where_they_equal_the_table():
    assert fast.integer_cutoffs(0.18) == (46, 46)
    assert fast.integer_cutoffs(46 / 255) == (0, 0)  # rounding decides pair by pair: the table
    for threshold in THRESHOLDS:
        kp, kn = fast.integer_cutoffs(threshold)
        if kp:
            diff = np.arange(256)[:, None] - np.arange(256)[None, :]
            same = (diff >= kp).astype(np.int8) - (-diff >= kn).astype(np.int8)
            np.testing.assert_array_equal(same, fast.sign_table(threshold))


def test_threads_converting_at_once_do_not_share_a_buffer():
    from concurrent.futures import ThreadPoolExecutor

    images = [np.asarray(photo(name).convert("RGB")) for name in PHOTOS[:4]] * 3
    alone = [fast.convert(rgb) for rgb in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(fast.convert, images))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a.col, b.col)
        np.testing.assert_array_equal(a.row, b.row)


def test_resize_and_whole_conversion_match_torch_itself():
    """Where torch is installed (make test installs the CPU build found on these machines)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    for n_in in list(range(1, 300, 7)) + [375, 500, 1411, 4000]:
        x = torch.arange(n_in, dtype=torch.float32).view(1, 1, n_in)
        for n_out in (1, 2, 63, 127, 190, 253, 254):
            got = F.interpolate(x, size=n_out, mode="nearest").view(-1).long().numpy()
            assert fast.nearest_index(n_in, n_out).tolist() == got.tolist(), (n_in, n_out)
    rng = np.random.default_rng(3)
    images = [np.asarray(photo(name).convert("RGB")) for name in PHOTOS[:3]]
    images += [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)
               for h, w in rng.integers(1, 600, (5, 2))]
    for rgb in images:
        h, w = fast.resized_shape(*rgb.shape[:2])
        if not (h and w):
            continue
        value = torch.from_numpy(rgb.copy()).max(dim=2).values.float()
        level = F.interpolate(value[None, None], size=(h, w), mode="nearest")[0, 0] / 255
        frames = []
        for r, c in fast.TRACE:
            frame = torch.zeros(h + 4, w + 4)
            frame[r:r + h, c:c + w] = level
            frames.append(frame)
        events = fast.convert(rgb)
        for positive in (True, False):
            rows = []
            for t in range(1, 9):
                d = frames[t] - frames[t - 1]
                mask = (d > 0.18) if positive else (d < -0.18)
                (r, c), (r0, c0) = fast.TRACE[t], fast.TRACE[t - 1]
                for a, b in ((r, r0), (r0, r), (r + h, r0 + h), (r0 + h, r + h)):
                    mask[a:b, :] = False
                for a, b in ((c, c0), (c0, c), (c + w, c0 + w), (c0 + w, c + w)):
                    mask[:, a:b] = False
                idx = mask.nonzero().numpy()
                idx = idx[(idx[:, 0] > 16) & (idx[:, 0] < 240) & (idx[:, 1] > 16)
                          & (idx[:, 1] < 240)]
                rows.append(np.column_stack([idx, np.full(len(idx), t)]))
            np.testing.assert_array_equal(np.concatenate(rows).astype(np.uint8),
                                          events.polarity(positive))


@pytest.mark.parametrize("threshold", [0.18, 46 / 255, 0.9])
def test_a_pillow_image_read_in_place_gives_the_array_s_events(threshold):
    from PIL import Image

    rng = np.random.default_rng(5)
    images = [photo(name).convert("RGB") for name in PHOTOS[:3]]
    images += [Image.fromarray(rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8))
               for h, w in [(375, 500), (1, 7), (254, 254), (600, 33), (2, 2)]]
    for image in images:
        got = fast.convert(image, threshold)
        want = fast.convert(np.asarray(image), threshold)
        assert (got.height, got.width) == (want.height, want.width)
        for field in ("row", "col", "t", "p"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


def test_pillow_lends_its_pixels_where_it_can_and_is_copied_where_not(monkeypatch):
    from PIL import Image

    image = photo(PHOTOS[0]).convert("RGB")
    if hasattr(Image.Image, "__arrow_c_array__"):  # Pillow >= 11.2
        assert fast._lent_pixels(image) is not None
    want = fast.convert(np.asarray(image))

    def refuse(self, *args):
        raise ValueError("not a single block")

    monkeypatch.setattr(Image.Image, "__arrow_c_array__", refuse, raising=False)
    assert fast._lent_pixels(image) is None
    np.testing.assert_array_equal(fast.convert(image).col, want.col)
    assert fast._lent_pixels(image.convert("L")) is None  # only RGB is read in place


def test_the_c_path_refuses_capsules_that_are_not_an_rgb_image():
    from PIL import Image

    grey = Image.new("L", (40, 30))
    if not hasattr(grey, "__arrow_c_array__"):
        pytest.skip("this Pillow cannot export images")
    rows, cols = fast._source_indices(30, 40)
    args = (fast.sign_table(0.18), 46, 46, fast._TRACE_BYTES, fast._scratch())
    with pytest.raises(ValueError, match="not an exported RGB image"):
        fast._convert_c(grey.__arrow_c_array__(), 30, 40, rows, cols, *args)
    rgb = Image.new("RGB", (40, 30))
    with pytest.raises(ValueError, match="not an exported RGB image"):  # the wrong size
        fast._convert_c(rgb.__arrow_c_array__(), 31, 40, rows, cols, *args)
    with pytest.raises(ValueError, match="PyCapsule"):
        fast._convert_c((1, 2), 30, 40, rows, cols, *args)
