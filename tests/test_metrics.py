import numpy as np
import pytest

from empanada_nb.metrics import Matches, evaluate, match_instances


def hand_case():
    """2 gt objects, 3 preds: one perfect, one IoU 0.6, one false positive."""
    gt = np.zeros((50, 50), np.int32)
    gt[0:10, 0:10] = 1
    gt[20:30, 0:10] = 2
    pred = np.zeros_like(gt)
    pred[0:10, 0:10] = 7  # IoU 1
    pred[20:30, 0:6] = 8  # 60 of gt 2's 100 px: IoU 0.6
    pred[40:45, 40:45] = 9  # FP
    return pred, gt


def test_hand_computed_scores():
    pred, gt = hand_case()
    r = evaluate(pred, gt)
    # @0.5: TP 2, FP 1, FN 0
    assert r["precision_50"] == pytest.approx(2 / 3)
    assert r["recall_50"] == pytest.approx(1.0)
    assert r["f1_50"] == pytest.approx(0.8) and r["f1"] == r["f1_50"]
    assert r["ap_50"] == pytest.approx(2 / 3)
    assert r["sq"] == pytest.approx(0.8)
    assert r["rq"] == pytest.approx(0.8)
    assert r["pq"] == pytest.approx(0.64)
    # @0.75: only the perfect match counts -> TP 1, FP 2, FN 1
    assert r["precision_75"] == pytest.approx(1 / 3)
    assert r["recall_75"] == pytest.approx(0.5)
    assert r["f1_75"] == pytest.approx(0.4)
    assert r["ap_75"] == pytest.approx(0.25)
    assert r["iou"] == pytest.approx(160 / 225)
    assert (r["n_pred"], r["n_gt"]) == (3, 2)
    assert r["per_class"][1]["tp_50"] == 2 and r["per_class"][1]["fn_75"] == 1


def test_match_instances_pairs():
    pred, gt = hand_case()
    m = match_instances(pred, gt, 0.5)
    assert isinstance(m, Matches)
    assert m.pred.tolist() == [7, 8] and m.gt.tolist() == [1, 2]
    assert m.iou == pytest.approx([1.0, 0.6])
    m75 = match_instances(pred, gt, 0.75)
    assert m75.pred.tolist() == [7] and m75.gt.tolist() == [1]


def test_low_threshold_matching_is_one_to_one():
    gt = np.zeros((10, 20), np.uint16)
    gt[:, :10] = 1
    pred = np.zeros_like(gt)
    pred[:, 0:4] = 5  # IoU 0.4 with gt 1
    pred[:, 4:7] = 6  # IoU 0.3 with gt 1
    m = match_instances(pred, gt, 0.2)
    assert m.pred.tolist() == [5] and m.gt.tolist() == [1]
    r = evaluate(pred, gt, iou_thresholds=(0.25, 0.5))
    assert r["per_class"][1]["tp_25"] == 1 and r["per_class"][1]["fp_25"] == 1
    assert r["per_class"][1]["tp_50"] == 0 and r["pq"] == 0.0


def test_3d_matches_stacked_2d():
    pred, gt = hand_case()
    r2 = evaluate(pred, gt)
    r3 = evaluate(np.stack([pred] * 3), np.stack([gt] * 3))
    for k in ("pq", "sq", "f1_50", "ap_75", "iou"):
        assert r3[k] == pytest.approx(r2[k])
    # an object present in one slice only of the prediction
    gt3 = np.zeros((4, 8, 8), np.int64)
    gt3[:, 2:6, 2:6] = 3
    pred3 = gt3.copy()
    pred3[0] = 0
    r = evaluate(pred3, gt3)
    assert r["iou"] == pytest.approx(0.75) and r["sq"] == pytest.approx(0.75) and r["f1"] == 1.0


def test_empty_pred_and_empty_gt():
    pred, gt = hand_case()
    r = evaluate(np.zeros_like(gt), gt)
    assert (r["pq"], r["f1"], r["recall_50"], r["ap_50"], r["iou"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert r["precision_50"] == 1.0 and r["n_pred"] == 0 and r["n_gt"] == 2
    r = evaluate(pred, np.zeros_like(gt))
    assert (r["pq"], r["f1"], r["precision_50"], r["iou"]) == (0.0, 0.0, 0.0, 0.0)
    assert r["n_gt"] == 0 and r["n_pred"] == 3
    r = evaluate(np.zeros_like(gt), np.zeros_like(gt))
    assert r["pq"] == r["f1"] == r["iou"] == r["ap_75"] == 1.0 and r["per_class"] == {}


def test_shape_mismatch_and_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        evaluate(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(TypeError, match="integer"):
        evaluate(np.zeros((4, 4), float), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="class 0"):
        evaluate(np.ones((4, 4), int), np.ones((4, 4), int), label_divisor=1000)
    with pytest.raises(ValueError, match="iou_thresholds"):
        evaluate(np.ones((4, 4), int), np.ones((4, 4), int), iou_thresholds=(1.5,))


def test_binary_connected_components():
    gt = np.zeros((20, 20), bool)
    gt[2:8, 2:8] = True
    gt[2:8, 12:18] = True
    pred = gt.copy()
    pred[4:6, 8:12] = True  # bridges the two objects into one
    r = evaluate(pred, gt, binary=True)
    assert (r["n_pred"], r["n_gt"]) == (1, 2)
    assert r["per_class"][1]["tp_50"] == 0
    assert evaluate(gt, gt, binary=True)["pq"] == 1.0
    # diagonal neighbours: one object with full connectivity, two with face connectivity
    d = np.zeros((4, 4), np.uint8)
    d[0, 0] = d[1, 1] = 1
    assert evaluate(d, d, binary=True)["n_gt"] == 1
    assert evaluate(d, d, binary=True, connectivity=1)["n_gt"] == 2


def test_label_divisor_per_class():
    gt = np.zeros((30, 30), np.uint32)
    gt[0:10, 0:10] = 1001
    gt[0:10, 20:30] = 2001
    pred = np.zeros_like(gt)
    pred[0:10, 0:10] = 1005
    pred[0:10, 20:30] = 1006  # right shape, wrong class: no match
    r = evaluate(pred, gt, label_divisor=1000)
    assert r["per_class"][1]["pq"] == pytest.approx(2 / 3)  # TP 1, FP 1: RQ 2/3, SQ 1
    assert r["per_class"][2]["pq"] == 0.0 and r["per_class"][2]["iou"] == 0.0
    assert r["pq"] == pytest.approx(1 / 3)
    assert r["per_class"][1]["iou"] == pytest.approx(0.5)
    # without the divisor all objects are one class and both match
    assert evaluate(pred, gt)["pq"] == 1.0


def test_semantic_only_and_large_ids():
    gt = np.zeros((10, 10), np.uint64)
    gt[:5] = 2**40
    pred = np.zeros_like(gt)
    pred[:4] = 2**41
    r = evaluate(pred, gt, instances=False)
    assert r["iou"] == pytest.approx(0.8) and "pq" not in r
    assert evaluate(pred, gt)["sq"] == pytest.approx(0.8)
