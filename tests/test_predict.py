"""Prediction arithmetic without processes: views, product means, ensembles, MD5 overrides, views."""
import cv2
import numpy as np
import pytest

from data.categories import Categories
from data.md5_dict import HashTable, Md5Dictionary
from predict import messages, probability
from predict.predictor import Md5Override, Predictor, make_variants
from predict.preprocess import fit_to_input, make_views, product_views
from predict.submission import variant_path
from tests.helpers import make_jpeg
from tests.predict_helpers import TableModel, prepared


# ---- probability arithmetic on hand-made arrays ---------------------------------------
def test_view_mean_averages_each_images_views():
    views = np.array([[0.8, 0.2], [0.4, 0.6],   # image 0: original, flip
                      [0.0, 1.0], [0.2, 0.8]])  # image 1
    np.testing.assert_allclose(probability.view_mean(views, 2), [[0.6, 0.4], [0.1, 0.9]])


def test_product_and_sum_of_the_pictures_can_disagree():
    # One picture sure of class 1, three fairly sure of class 0.
    images = np.array([[0.001, 0.999], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])
    np.testing.assert_allclose(probability.product_scores(images, "sum"), [2.701, 1.299])
    np.testing.assert_allclose(probability.product_scores(images, "product"), np.log([0.000729, 0.000999]))
    assert np.argmax(probability.product_scores(images, "sum")) == 0
    assert np.argmax(probability.product_scores(images, "product")) == 1  # the sure picture wins


def test_product_with_zeros_behaves_like_the_float_product():
    # a one-hot override (class 0) beats a picture sure of class 2: the other classes get a zero factor
    override, sure = [1.0, 0.0, 0.0], [0.001, 0.001, 0.998]
    assert np.argmax(probability.product_scores(np.array([override, sure]), "product")) == 0
    # two overrides to different classes: every class has a zero, so the original's product is all
    # zeros and its argmax class 0; the log scores are all -inf (no NaN) with the same argmax
    scores = probability.product_scores(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), "product")
    assert np.isneginf(scores).all() and np.argmax(scores) == 0
    # random pictures with zeros sprinkled in: the same argmax as the float product wherever it is positive
    rng = np.random.default_rng(0)
    for _ in range(2000):
        images = rng.dirichlet(np.full(20, 0.3), size=rng.integers(1, 5))
        images[rng.random(images.shape) < 0.2] = 0.0
        float_product = np.prod(images, axis=0)
        if float_product.max() > 0:
            assert np.argmax(probability.product_scores(images, "product")) == np.argmax(float_product)


def test_ensemble_means_average_the_first_k_models():
    model_probs = np.array([[[0.2, 0.8]], [[0.6, 0.4]], [[1.0, 0.0]]], dtype=np.float32)  # 3 models, 1 picture
    means = probability.ensemble_means(model_probs, [1, 3])
    np.testing.assert_allclose(means[1], [[0.2, 0.8]])
    np.testing.assert_allclose(means[3], [[0.6, 0.4]])


@pytest.mark.parametrize("kind, class_ids, counts, expected", [
    ("unique", [2], [5], [0, 0, 1, 0]),
    ("unique", [2, 3], [5, 1], None),                     # conflicting labels: the model decides
    ("majority", [2, 3], [1, 5], [0, 0, 0, 1]),
    ("majority", [2, 3], [3, 3], [0, 0, 1, 0]),           # a tie goes to the first listed (first seen)
    ("majority", [3, 2], [3, 3], [0, 0, 0, 1]),
    ("l1", [0, 3], [1, 3], [0.25, 0, 0, 0.75]),
    ("l1", [1, 1], [2, 5], [0, 5 / 7, 0, 0]),            # two categories, one sub-class: the last count stays
    ("l2", [0, 3], [3, 4], [0.6, 0, 0, 0.8]),
    # softmax over the whole vector [0, 1, 2, 0]: unseen classes keep mass
    ("softmax", [1, 2], [1, 2], np.exp([-2, -1, 0, -2]) / np.exp([-2, -1, 0, -2]).sum()),
    ("none", [2], [5], None),
    ("unique", [], [], None),
])
def test_md5_override_kinds(kind, class_ids, counts, expected):
    result = probability.md5_override(np.array(class_ids, dtype=int), counts, 4, kind)
    if expected is None:
        assert result is None
    else:
        np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_first_occurrences():
    assert probability.first_occurrences([b"a", b"b", b"a", b"c", b"b"]) == [0, 1, 3]


# ---- views ---------------------------------------------------------------------------
def test_views_are_the_picture_its_flips_and_the_border_crop():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    views = make_views(rgb, 3)
    assert views.shape == (4, 3, 20, 24)
    np.testing.assert_array_equal(views[0], rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(views[1], rgb[:, ::-1].transpose(2, 0, 1))  # cv2.flip(img, 1)
    np.testing.assert_array_equal(views[2], rgb[::-1].transpose(2, 0, 1))     # cv2.flip(img, 0)
    # view 3: the picture without a 5-pixel border, resized back with cv2.resize's default (bilinear)
    border_crop = cv2.resize(rgb[5:-5, 5:-5], (24, 20))
    np.testing.assert_array_equal(views[3], border_crop.transpose(2, 0, 1))
    assert make_views(rgb, 2).shape == (3, 3, 20, 24)
    with pytest.raises(ValueError, match="border"):
        make_views(rgb[:10], 3)


def test_resize_squashes_with_cubic_interpolation_then_crops_the_centre():
    rgb = np.random.default_rng(1).integers(0, 256, (180, 240, 3), dtype=np.uint8)
    # --resize 64 with a 64x64 input: the whole picture squashed to 64x64 (aspect not kept), cubic
    np.testing.assert_array_equal(fit_to_input(rgb, 64, 64, resize=64),
                                  cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_CUBIC))
    # a larger --resize: squashed, then the centre of the input size
    np.testing.assert_array_equal(fit_to_input(rgb, 64, 64, resize=80),
                                  cv2.resize(rgb, (80, 80), interpolation=cv2.INTER_CUBIC)[8:72, 8:72])
    with pytest.raises(ValueError, match="smaller than the input"):
        fit_to_input(rgb, 64, 64, resize=60)
    # without --resize: the centre crop of a larger picture, a smaller one scaled up first
    np.testing.assert_array_equal(fit_to_input(rgb, 160, 160), rgb[10:170, 40:200])
    assert fit_to_input(rgb[:32, :32], 64, 64).shape == (64, 64, 3)


def test_product_views_decode_rgb_and_flag_bad_pictures():
    import cv2
    blue_bgr = np.zeros((8, 8, 3), np.uint8)
    blue_bgr[..., 0] = 255  # OpenCV writes BGR: this picture is blue
    jpeg = cv2.imencode(".png", blue_bgr)[1].tobytes()
    views, valid = product_views([jpeg, b"not a picture", make_jpeg(1, 8)], 8, 8, multi_view=1)
    assert valid == [True, False, True]
    assert views.shape == (4, 3, 8, 8)
    assert views[0, 2].min() == 255 and views[0, 0].max() == 0  # channel order RGB: blue is channel 2


def test_array_frames_are_checked_against_their_shape():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(messages.array_from_frame(array.tobytes(), [2, 3, 4], np.uint8), array)
    with pytest.raises(messages.MessageError):
        messages.array_from_frame(array.tobytes(), [2, 3, 5], np.uint8)
    with pytest.raises(messages.MessageError):
        messages.decode_header(b"\x80\x03pickle", required=("product",))


def test_product_message_carries_the_views_of_each_model_input():
    small, large = np.ones((4, 3, 8, 8), np.uint8), np.full((4, 3, 16, 16), 2, np.uint8)
    digests = [b"a" * 16, b"b" * 16, b"c" * 16]
    frames = messages.encode_product(7, 2, [True, False, True], [small, large], digests)
    decoded = messages.PreparedProduct([bytes(f) for f in frames])
    assert (decoded.product, decoded.num_images, decoded.num_views, decoded.num_rows) == (7, 3, 2, 4)
    assert decoded.valid == [True, False, True] and decoded.digests == digests
    np.testing.assert_array_equal(decoded.views[1], large)
    with pytest.raises(messages.MessageError, match="views for 2 pictures x 2"):  # one input short of a view
        messages.PreparedProduct([bytes(f) for f in messages.encode_product(7, 2, [True, False, True],
                                                                           [small, large[:3]], digests)])
    with pytest.raises(messages.MessageError, match="frames for 2 model inputs"):
        messages.PreparedProduct([bytes(f) for f in frames[:2]] + [bytes(frames[-1])])
    assert messages.decode_pictures(messages.encode_pictures(7, 42, [1], [b"x", b"y"]))[:2] == (7, {1})


def test_pictures_message_carries_the_first_pass_digests():
    digests = [b"a" * 16, b"\0" * 16]  # a digest may end in zero bytes: the frame keeps all 16
    frames = messages.encode_pictures(7, 42, [], [b"x", b"y"], b"".join(digests))
    assert messages.decode_pictures(frames) == (7, set(), [b"x", b"y"], digests)
    assert messages.decode_pictures(messages.encode_pictures(7, 42, [], [b"x"]))[3] is None  # the worker hashes
    with pytest.raises(messages.MessageError, match="16 bytes of digests for 2 pictures"):
        messages.decode_pictures(messages.encode_pictures(7, 42, [], [b"x", b"y"], digests[0]))


def test_variant_paths():
    variants = make_variants(3, [1, 2])
    assert [v.tag for v in variants] == ["e3.m0", "e1.m0", "e1.m1", "e2.m0", "e2.m1"]
    assert variant_path("out/sub.csv", variants[3].tag) == "out/sub.e2.m0.csv"
    assert variant_path("sub.csv.gz", variants[2].tag) == "sub.e1.m1.csv.gz"


# ---- the predictor with stand-in models -----------------------------------------------
def run_predictor(models, products, ensembles=(), batch_size=3, md5_override=None, unique_md5=False,
                  num_classes=2):
    variants = make_variants(len(models), list(ensembles))
    predictor = Predictor(models, batch_size, num_classes, variants, 10, len(products),
                          md5_override, unique_md5)
    for item in products:
        predictor.add(item)
    predictor.flush()
    return variants, predictor


def test_first_k_models_make_each_ensemble():
    models = [TableModel([[0.7, 0.3]]), TableModel([[0.1, 0.9]]), TableModel([[0.6, 0.4]])]
    variants, predictor = run_predictor(models, [prepared(10, [0]), prepared(11, [0, 0])], ensembles=[1, 2])
    by_tag = dict(zip([v.tag for v in variants], predictor.class_ids.tolist()))
    assert by_tag["e1.m0"] == [0, 0]   # model 1 alone
    assert by_tag["e2.m0"] == [1, 1]   # models 1-2: (0.4, 0.6)
    assert by_tag["e3.m0"] == [1, 1]   # all three: (0.467, 0.533)


def test_products_spanning_batches_and_both_product_reductions():
    # table rows: 0 -> sure of class 1; 1 -> fairly sure of class 0
    model = TableModel([[0.001, 0.999], [0.9, 0.1]])
    products = [prepared(10, [0, 1, 1, 1]), prepared(11, [0]), prepared(12, [1, 1])]
    variants, predictor = run_predictor([model], products, ensembles=[1], batch_size=3)
    by_tag = dict(zip([v.tag for v in variants], predictor.class_ids.tolist()))
    assert by_tag["e1.m0"] == [1, 1, 0]  # product over the 4 pictures of product 10: the sure picture wins
    assert by_tag["e1.m1"] == [0, 1, 0]  # sum
    assert by_tag["e1.m0"] == predictor.class_ids[0].tolist()  # the main output is m0
    assert predictor.completed == 3 and predictor.images == 7


def test_m0_multiplies_the_pictures_model_means_not_per_model_products():
    # model A: picture 0 -> (0.22, 0.78), picture 1 -> (0.99, 0.01); model B: (0.37, 0.63) for both.
    # The original: per picture the mean of the models, (0.295, 0.705) and (0.68, 0.32); their product
    # (0.2006, 0.2256) -> class 1. A per-model (geometric) product mean averaged over the models gives 0.
    models = [TableModel([[0.22, 0.78], [0.99, 0.01]]), TableModel([[0.37, 0.63], [0.37, 0.63]])]
    variants, predictor = run_predictor(models, [prepared(10, [0, 1])], ensembles=[1, 2])
    by_tag = dict(zip([v.tag for v in variants], predictor.class_ids[:, 0].tolist()))
    assert by_tag == {"e2.m0": 1, "e1.m0": 0, "e1.m1": 0, "e2.m1": 1}


def test_flip_views_are_averaged_per_image():
    model = TableModel([[0.9, 0.1], [0.0, 1.0], [0.45, 0.55]])
    # one image, two views: rows 0 and 1 average to (0.45, 0.55) -> class 1
    _, predictor = run_predictor([model], [prepared(10, [0, 1], num_views=2)])
    assert predictor.class_ids[0].tolist() == [1]


def _override(entries, kind, categories=None, cate_level=3):
    """An Md5Override over an in-memory dictionary: {digest: [category_id, ...]} in training file order."""
    keys = [d for d, cats in entries.items() for _ in cats]
    cats = [c for cats in entries.values() for c in cats]
    table = HashTable.from_pairs(np.array(keys, dtype="S16"), np.array(cats))
    categories = categories or Categories([1000, 1001], ["a", "a"], ["b", "b"], ["c0", "c1"])
    num_classes = len(categories) if cate_level == 3 else categories.num_level1_sub_classes
    return Md5Override(Md5Dictionary(table, HashTable.from_pairs(np.zeros(0, "S16"), np.zeros(0))), categories,
                       kind, num_classes, cate_level)


def test_majority_tie_goes_to_the_category_seen_first_in_training():
    model = TableModel([[0.5, 0.5]])
    tied = b"t" * 16
    for first_seen, expected in ((1001, 1), (1000, 0)):
        other = 2001 - first_seen
        override = _override({tied: [first_seen, other, other, first_seen]}, "majority")
        assert override([tied])[0].tolist() == [float(expected == 0), float(expected == 1)]
        _, predictor = run_predictor([model], [prepared(10, [0], digests=[tied])], md5_override=override)
        assert predictor.class_ids[0].tolist() == [expected]


def test_level1_overrides_set_sub_class_ids():
    # level-1 groups A: 1000, 1002; B: 1001, 1003 -> sub-class ids 0, 0, 1, 1 in file order
    categories = Categories([1000, 1001, 1002, 1003], ["A", "B", "A", "B"], ["x"] * 4, ["c0", "c1", "c2", "c3"])
    known, shared = b"k" * 16, b"s" * 16
    override = _override({known: [1003], shared: [1001, 1000, 1000]}, "unique", categories, cate_level=1)
    assert set(override([known, shared])) == {0}  # `shared` has two categories: unique leaves it
    np.testing.assert_array_equal(override([known])[0], [0.0, 1.0])
    l1 = _override({shared: [1001, 1000, 1000]}, "l1", categories, cate_level=1)
    # 1001 and 1000 are both sub-class 0: the later-listed count (2 of 1000) stays, over the total 3
    np.testing.assert_allclose(l1([shared])[0], [2 / 3, 0.0])


def test_the_store_keeps_the_classes_the_dictionary_names_for_a_products_pictures():
    categories = Categories([1000, 1001, 1002], ["a"] * 3, ["b"] * 3, ["c0", "c1", "c2"])
    shared, known, unknown = b"s" * 16, b"k" * 16, b"u" * 16
    entries = {shared: [1000, 1002, 1002, 4242], known: [1001]}  # 4242: not in the CSV, not a class
    for kind in ("unique", "majority", "l1"):  # whatever the run's kind: the store serves every kind
        override = _override(entries, kind, categories)
        assert override.named_classes([unknown, shared, known, known]).tolist() == [2, 0, 1]  # most counted first
        assert override.named_classes([unknown]).tolist() == []

    class Recorder:
        feature_dims = None  # no features kept

        def __init__(self):
            self.named = []

        def write(self, row, means, decoded, digests, features, named):
            self.named.append((row, named.tolist()))

    predictor = Predictor([TableModel([[0.5, 0.5, 0.0]])], 3, 3, make_variants(1, []), 10, 2,
                          _override(entries, "unique", categories), store=Recorder())
    for item in (prepared(10, [0, 0], digests=[unknown, known]), prepared(11, [0], digests=[unknown])):
        predictor.add(item)
    predictor.flush()
    assert sorted(predictor.store.named) == [(0, [1]), (1, [])]


def test_md5_override_replaces_a_known_picture():
    model = TableModel([[0.8, 0.2]])
    known, unknown, conflicted = b"k" * 16, b"u" * 16, b"c" * 16
    override = _override({known: [1001, 1001], conflicted: [1000, 1001]}, "unique")
    products = [prepared(10, [0], digests=[known]),       # one-hot class 1 replaces the model's 0
                prepared(11, [0], digests=[unknown]),     # not in the dictionary
                prepared(12, [0], digests=[conflicted])]  # two categories: unique leaves it
    _, predictor = run_predictor([model], products, md5_override=override)
    assert predictor.class_ids[0].tolist() == [1, 0, 0]
    assert predictor.images_overridden == 1
    _, majority = run_predictor([model], products, md5_override=_override({conflicted: [1001, 1001, 1000]},
                                                                          "majority"))
    assert majority.class_ids[0].tolist() == [0, 0, 1]


def test_undecodable_pictures_fall_back_to_the_dictionary_or_the_others():
    model = TableModel([[0.8, 0.2]])
    known = b"k" * 16
    override = _override({known: [1001]}, "unique")
    products = [prepared(10, [], digests=[known], valid=[False]),            # only the dictionary knows it
                prepared(11, [0], digests=[b"x" * 16, b"y" * 16], valid=[False, True])]
    _, predictor = run_predictor([model], products, md5_override=override)
    assert predictor.class_ids[0].tolist() == [1, 0]
    _, alone = run_predictor([model], products[:1])
    assert alone.products_without_picture == 1 and alone.completed == 1


def test_product_unique_md5_counts_a_repeated_picture_once():
    model = TableModel([[0.6, 0.4], [0.35, 0.65]])
    same = b"s" * 16
    # the class-0 picture appears twice, the class-1 picture once: products (0.126, 0.104) and (0.21, 0.26)
    item = prepared(10, [0, 0, 1], digests=[same, same, b"o" * 16])
    _, repeated = run_predictor([model], [item])
    _, unique = run_predictor([model], [item], unique_md5=True)
    assert repeated.class_ids[0].tolist() == [0] and unique.class_ids[0].tolist() == [1]


def test_a_product_received_twice_is_refused():
    model = TableModel([[0.9, 0.1]])
    with pytest.raises(ValueError, match="twice"):
        run_predictor([model], [prepared(10, [0]), prepared(10, [0])])


def test_level1_summary_lists_sub_class_ids(capsys):
    from predict.outputs import write_category_summary
    categories = Categories([1000, 1001, 1002, 1003], ["A", "B", "A", "B"], ["x"] * 4, ["c0", "c1", "c2", "c3"])
    write_category_summary("-", categories, np.array([0, 1, 1, 1]), np.array([0, 1, 0, 0]), cate_level=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sub_class_id,products,correct,accuracy,most_confused_sub_class_id")
    assert lines[1:] == ["0,3,1,0.3333,1,2", "1,1,1,1.0000,,0"]


def test_a_loaded_model_keeps_one_copy_of_its_parameters(tmp_path):
    """MXNet's Module keeps a CPU copy of the parameters beside its executor's; prediction drops it, so that the
    predictor's memory is the networks' once (it held them twice: 2.05x the parameters for three models here)."""
    import mxnet as mx

    from predict.models import Model

    classes, size = 5270, 48
    flat = mx.sym.FullyConnected(mx.sym.flatten(mx.sym.var("data")), num_hidden=classes, name="fc")
    mx.sym.SoftmaxOutput(flat, name="softmax").save(str(tmp_path / "m-symbol.json"))
    weight = np.random.default_rng(0).random((classes, 3 * size * size), dtype=np.float32)
    mx.nd.save(str(tmp_path / "m-0001.params"), {"arg:fc_weight": mx.nd.array(weight),
                                                  "arg:fc_bias": mx.nd.zeros(classes)})

    def anonymous_mb():
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon")) / 1024

    before, models = anonymous_mb(), []
    for _ in range(3):
        models.append(Model(str(tmp_path / "m-symbol.json"), str(tmp_path / "m-0001.params"), 4, (3, size, size),
                            [mx.cpu()], classes))
    grown = anonymous_mb() - before
    assert grown < 1.7 * 3 * weight.nbytes / 2 ** 20, f"{grown:.0f} MB for {3 * weight.nbytes / 2 ** 20:.0f} MB"
    probs = models[0].forward(mx.nd.array(np.zeros((4, 3, size, size)))).asnumpy()
    assert probs.shape == (4, classes) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
