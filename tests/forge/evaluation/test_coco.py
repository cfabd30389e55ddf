"""COCO evaluation: bit-exact parity with pycocotools, edge cases, and the mmengine metric."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from forge.data.coco_reader import AnnotationError, CocoAnnotations
from forge.data.structures import Detections, DetSample, ImageMeta
from forge.evaluation.coco import (
    COCO_SUMMARY_NAMES,
    CocoMetric,
    ResultsError,
    detections_to_coco,
    evaluate_coco,
    format_classwise_table,
    format_coco_table,
)
from tests.forge.evaluation.random_cases import make_coco_case


@pytest.fixture(scope="module")
def case():
    return make_coco_case(seed=0, num_images=300, num_classes=30)


@pytest.fixture(scope="module")
def reference(case):
    """pycocotools' COCOeval on the random case, computed once per IoU type."""
    cache = {}

    def get(iou_type):
        if iou_type not in cache:
            cache[iou_type] = _pycocotools(case["gt"], case["dt_" + iou_type], iou_type)
        return cache[iou_type]

    return get


def _pycocotools(gt: dict, dts: list, iou_type: str, img_ids=None, cat_ids=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dts)), iou_type)
        if img_ids is not None:
            ev.params.imgIds = img_ids
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _ref_per_class(ev) -> list[float]:
    out = []
    for k in range(len(ev.params.catIds)):
        p = ev.eval["precision"][:, :, k, 0, -1]
        out.append(float(np.mean(p[p > -1])) if (p > -1).any() else float("nan"))
    return out


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_bit_exact_parity_with_pycocotools(case, reference, iou_type):
    dts = case["dt_" + iou_type]
    assert all("bbox" not in d for d in case["dt_segm"])  # mask results: area from the mask
    ref = reference(iou_type)
    ours = evaluate_coco(case["gt"], dts, iou_type, classwise=True)
    assert ours["stats"] == [float(s) for s in ref.stats]  # all 12, exactly
    assert [ours[n] for n in COCO_SUMMARY_NAMES] == ours["stats"]
    ref_ap = _ref_per_class(ref)
    ours_ap = [c["AP"] for c in ours["per_class"]]
    assert np.array_equal(np.array(ours_ap), np.array(ref_ap), equal_nan=True)
    assert [c["category_id"] for c in ours["per_class"]] == sorted(c["id"] for c in case["gt"]["categories"])
    assert np.isnan(ours["per_class"][-1]["AP"])  # the category without ground truth
    assert ours["num_images"] == 300 and ours["num_detections"] == len(dts)
    # the case really exercises what it should
    assert sum(a["iscrowd"] for a in case["gt"]["annotations"]) > 0
    assert 0 < ours["mAP"] < 1 and ours["mAP_s"] > 0 and ours["mAP_l"] > 0


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_parity_through_the_rematching_path(case, reference, iou_type, monkeypatch):
    """The 1-eps precision fix decides most cells by counting; force its re-matching path everywhere."""
    import forge.evaluation.coco.precision as precision_mod

    monkeypatch.setattr(precision_mod, "FORCE_WALK", True)
    ref = reference(iou_type)
    ours = evaluate_coco(case["gt"], case["dt_" + iou_type], iou_type)
    assert ours["stats"] == [float(s) for s in ref.stats]


def test_image_and_category_subsets_match_pycocotools(case):
    img_ids = [img["id"] for img in case["gt"]["images"][::3]]
    cat_ids = sorted(c["id"] for c in case["gt"]["categories"])[::2]
    ref = _pycocotools(case["gt"], case["dt_bbox"], "bbox", img_ids=img_ids, cat_ids=cat_ids)
    ours = evaluate_coco(case["gt"], case["dt_bbox"], "bbox", img_ids=img_ids, cat_ids=cat_ids, classwise=True)
    assert ours["stats"] == [float(s) for s in ref.stats]
    assert [c["category_id"] for c in ours["per_class"]] == cat_ids
    with pytest.raises(ResultsError, match=r"category ids \[12345\] are not in the ground truth"):
        evaluate_coco(case["gt"], [], "bbox", cat_ids=[12345])


def _tiny_gt() -> dict:
    return {
        "images": [{"id": 1, "width": 50, "height": 40}, {"id": 2, "width": 50, "height": 40}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 8, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 8, "bbox": [30, 20, 10, 10], "area": 100, "iscrowd": 0},
        ],
    }


def test_empty_predictions_give_zero_not_a_crash():
    out = evaluate_coco(_tiny_gt(), [], "bbox", classwise=True)
    # both objects are small; medium/large have nothing to measure: pycocotools' -1
    assert out["stats"] == [0.0, 0.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, -1.0]
    assert [c["AP"] for c in out["per_class"]] == [0.0, 0.0]


def test_images_without_annotations_and_perfect_detections():
    dts = [
        {"image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 10], "score": 0.9},
        {"image_id": 1, "category_id": 8, "bbox": [30, 20, 10, 10], "score": 0.8},
    ]
    out = evaluate_coco(_tiny_gt(), dts, "bbox")
    assert out["mAP"] == pytest.approx(1.0, abs=1e-12) and out["AR@1"] == 1.0
    # a false positive on the empty image 2 lowers the precision of "cat"
    out_fp = evaluate_coco(_tiny_gt(), dts + [{"image_id": 2, "category_id": 3, "bbox": [0, 0, 9, 9], "score": 0.95}])
    assert out_fp["mAP"] < out["mAP"]
    # no ground truth at all -> -1 everywhere, no crash
    gt = _tiny_gt()
    gt["annotations"] = []
    assert set(evaluate_coco(gt, dts, "bbox")["stats"]) == {-1.0}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 0.5}, "unknown category_id 4"),
        ({"image_id": 5, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}, "image_id is not in the ground"),
        ({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1], "score": 0.5}, "bbox must be 4 finite numbers"),
        ({"image_id": 1, "category_id": 3, "bbox": [0, 0, -1, 1], "score": 0.5}, "negative width"),
        ({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": float("nan")}, "score must be finite"),
        ({"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}, "missing key 'score'"),
    ],
)
def test_bad_results_are_named(bad, message):
    good = {"image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 10], "score": 0.9}
    with pytest.raises(ResultsError, match=r"<results>: result #1 .*" + message):
        evaluate_coco(_tiny_gt(), [good, bad], "bbox")


def test_bad_files_are_named(tmp_path):
    dt = tmp_path / "dt.json"
    dt.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ResultsError, match="dt.json: results must be a JSON list"):
        evaluate_coco(_tiny_gt(), dt)
    gt = _tiny_gt()
    gt["annotations"][0]["category_id"] = 99
    with pytest.raises(AnnotationError, match="annotation id 1 refers to unknown category_id 99"):
        evaluate_coco(gt, [])
    seg = {"image_id": 1, "category_id": 3, "score": 0.5, "segmentation": {"size": [4, 4], "counts": "02"}}
    with pytest.raises(ResultsError, match=r"RLE size \[4, 4\] differs from the image size \[40, 50\]"):
        evaluate_coco(_tiny_gt(), [seg], "segm")


def test_tables():
    out = evaluate_coco(_tiny_gt(), [], "bbox", classwise=True)
    table = format_coco_table(out, title="t")
    assert "mAP_50" in table and "AR_l@100" in table and "-1.000" in table
    assert "dog" in format_classwise_table(out["per_class"])


# ------------------------------------------------------------------------------------------------ metric
def _samples(case, with_masks: bool, mask_score_shift: float = 0.0) -> list[DetSample]:
    """DetSamples whose predictions are the random case's detections (bbox/segm lists are in lockstep)."""
    coco = CocoAnnotations.load(copy.deepcopy(case["gt"]))
    per_img = {img_id: [] for img_id in coco.image_ids}
    for i, d in enumerate(case["dt_bbox"]):
        per_img[d["image_id"]].append(i)
    samples = []
    for img_id, idx in per_img.items():
        img = coco.images[img_id]
        boxes = torch.tensor([case["dt_bbox"][i]["bbox"] for i in idx], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        scores = torch.tensor([case["dt_bbox"][i]["score"] for i in idx], dtype=torch.float32)
        labels = torch.tensor([coco.cat_id_to_label[case["dt_bbox"][i]["category_id"]] for i in idx])
        masks = [case["dt_segm"][i]["segmentation"] for i in idx] if with_masks else None
        mask_scores = (scores * 0 + mask_score_shift + torch.rand(len(idx))) if mask_score_shift else None
        meta = ImageMeta(image_id=img_id, ori_shape=(img["height"], img["width"]))
        meta.extra["ori_gt"] = coco.to_instances(img_id, with_masks=with_masks)
        meta.extra["ori_gt_areas"] = torch.tensor([a["area"] for a in coco.anns(img_id)], dtype=torch.float64)
        samples.append(DetSample(meta=meta, pred=Detections(boxes, scores, labels, masks, mask_scores)))
    return samples, coco


def _expected(samples, coco, iou_type):
    bbox, segm = [], []
    for s in samples:
        b, m = detections_to_coco(s.meta.image_id, s.pred, coco.label_to_cat_id)
        bbox += b
        segm += m
    return evaluate_coco(copy.deepcopy(coco.dataset), bbox if iou_type == "bbox" else segm, iou_type)


def _run_evaluator(metric, samples, coco, batch=7):
    ev = Evaluator(metric)
    ev.dataset_meta = {"classes": coco.class_names, "cat_ids": coco.cat_ids}
    for i in range(0, len(samples), batch):
        ev.process(data_samples=samples[i : i + batch], data_batch=None)
    return ev.evaluate(len(samples))


def test_metric_with_ann_file_matches_pure_function(case, tmp_path):
    small = make_coco_case(seed=3, num_images=60, num_classes=12)
    samples, coco = _samples(small, with_masks=True)
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps(small["gt"]))
    metric = CocoMetric(ann_file=str(ann), metric=["bbox", "segm"], round_digits=None, classwise=True)
    res = _run_evaluator(metric, samples, coco)
    for iou_type in ("bbox", "segm"):
        exp = _expected(samples, coco, iou_type)
        for name in COCO_SUMMARY_NAMES:
            assert res[f"coco/{iou_type}_{name}"] == exp[name], (iou_type, name)
    assert f"coco/bbox_{coco.class_names[0]}_precision" in res
    # and close to evaluating the original (float64) boxes
    direct = evaluate_coco(small["gt"], small["dt_bbox"], "bbox")
    assert abs(res["coco/bbox_mAP"] - direct["mAP"]) < 1e-3


def test_metric_ground_truth_from_dataset_is_exact():
    small = make_coco_case(seed=4, num_images=60, num_classes=12)
    samples, coco = _samples(small, with_masks=True)
    metric = CocoMetric(ann_file=None, metric=("bbox", "segm"), round_digits=None)
    res = _run_evaluator(metric, samples, coco)
    for iou_type in ("bbox", "segm"):
        exp = _expected(samples, coco, iou_type)
        assert [res[f"coco/{iou_type}_{n}"] for n in COCO_SUMMARY_NAMES] == exp["stats"]


def test_metric_rounding_mask_scores_and_padding_duplicates():
    small = make_coco_case(seed=5, num_images=30, num_classes=8)
    samples, coco = _samples(small, with_masks=True, mask_score_shift=0.5)
    metric = CocoMetric(metric="segm")
    # mmengine pads the last batch in distributed runs; duplicates of an image are dropped
    ev = Evaluator(metric)
    ev.dataset_meta = {"classes": coco.class_names, "cat_ids": coco.cat_ids}
    ev.process(data_samples=samples, data_batch=None)
    with pytest.warns(UserWarning, match="duplicate image records"):
        metric.results.append(metric.results[0])
        res = metric.compute_metrics(metric.results)
    segm = []
    for s in samples:
        segm += detections_to_coco(s.meta.image_id, s.pred, coco.label_to_cat_id)[1]
    assert segm[0]["score"] == pytest.approx(float(samples[0].pred.mask_scores[0]))  # mask_scores score masks
    exp = evaluate_coco(copy.deepcopy(coco.dataset), segm, "segm")
    assert res["segm_mAP"] == round(exp["mAP"], 3)
    assert all(v == round(v, 3) for v in res.values())


def test_format_only_writes_submission(tmp_path):
    small = make_coco_case(seed=6, num_images=10, num_classes=5)
    samples, coco = _samples(small, with_masks=True)
    prefix = tmp_path / "sub" / "test-dev"
    metric = CocoMetric(ann_file=None, metric=["bbox", "segm"], format_only=True, outfile_prefix=str(prefix))
    assert _run_evaluator(metric, samples, coco) == {}
    bbox = json.loads((tmp_path / "sub" / "test-dev.bbox.json").read_text())
    segm = json.loads((tmp_path / "sub" / "test-dev.segm.json").read_text())
    assert len(bbox) == len(small["dt_bbox"]) == len(segm)
    assert set(bbox[0]) == {"image_id", "category_id", "bbox", "score"}
    assert set(segm[0]) == {"image_id", "category_id", "segmentation", "score"}
    with pytest.raises(ValueError, match="outfile_prefix"):
        CocoMetric(format_only=True)


def test_metric_errors_are_clear():
    small = make_coco_case(seed=7, num_images=5, num_classes=4)
    samples, coco = _samples(small, with_masks=False)
    metric = CocoMetric(metric="segm")
    with pytest.raises(ValueError, match="needs predicted masks"):
        metric.process(None, samples)
    bad = samples[1]
    bad.pred.labels[:] = 17
    metric = CocoMetric(metric="bbox")
    metric.dataset_meta = {"classes": coco.class_names, "cat_ids": coco.cat_ids}
    metric.process(None, [bad])
    with pytest.raises(ResultsError, match=r"image \d+: predicted label 17 has no category id"):
        metric.compute_metrics(metric.results)
    no_gt = DetSample(meta=ImageMeta(image_id=1, ori_shape=(4, 4)), pred=Detections.empty())
    with pytest.raises(ValueError, match=r"meta.extra\['ori_gt'\]"):
        CocoMetric().process(None, [no_gt])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("force_walk", [False, True])
def test_precision_array_equals_pycocotools(case, reference, iou_type, force_walk, monkeypatch):
    """Stronger than the summary: the whole (T, R, K, A, M) precision array is pycocotools', bit for bit."""
    import forge.evaluation.coco.precision as precision_mod
    from forge.evaluation.coco.engine import run_engine
    from forge.evaluation.coco.results import load_gt

    monkeypatch.setattr(precision_mod, "FORCE_WALK", force_walk)
    ref = reference(iou_type)
    ev = run_engine(load_gt(case["gt"]).dataset, case["dt_" + iou_type], iou_type, None, (1, 10, 100))
    ours = ev.eval["precision"]
    assert ours.shape == ref.eval["precision"].shape
    assert np.array_equal(ours, ref.eval["precision"])
    assert np.array_equal(ev.eval["recall"], ref.eval["recall"])
    # the fix had work to do on this case (without it these cells would read 1.0)
    assert (ours == precision_mod.ONE_MINUS_EPS).sum() > 10


def test_engine_layout_change_fails_loudly(case, monkeypatch):
    """If faster-coco-eval stops giving pycocotools' precision layout, evaluation raises, naming version and key."""
    import faster_coco_eval
    from faster_coco_eval import COCOeval_faster

    from forge.evaluation.coco.precision import EngineMismatchError

    original = COCOeval_faster.accumulate

    def squeezed(self):
        original(self)
        self.eval["precision"] = self.eval["precision"][..., -1]  # e.g. a release that drops the maxDets axis

    monkeypatch.setattr(COCOeval_faster, "accumulate", squeezed)
    version = faster_coco_eval.__version__
    with pytest.raises(EngineMismatchError, match=rf"faster-coco-eval {version}: eval\['precision'\]"):
        evaluate_coco(case["gt"], case["dt_bbox"], "bbox")

    def dropped(self):
        original(self)
        del self.eval["precision"]

    monkeypatch.setattr(COCOeval_faster, "accumulate", dropped)
    with pytest.raises(EngineMismatchError, match="expected a float array of shape"):
        evaluate_coco(case["gt"], case["dt_bbox"], "bbox")
