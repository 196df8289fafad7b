"""Dog-IQA's pure logic: Algorithm 1, the aggregation formulas, the prompt and answer parsing."""
import re

import numpy as np
import pytest

from iqabench.methods import dog_iqa_aggregate as agg
from iqabench.methods.dog_iqa_judge import LEVEL_WORDS, build_prompt, parse_answer


def _rect(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_select_regions_drops_small_masks_and_adds_the_uncovered_area():
    h, w = 10, 20  # 200 px; t = 0.05 -> masks under 10 px are dropped
    big = _rect(h, w, 0, 10, 0, 8)  # 80 px
    mid = _rect(h, w, 2, 6, 10, 14)  # 16 px
    tiny = _rect(h, w, 8, 10, 18, 20)  # 4 px: dropped, so its pixels count as uncovered
    regions = agg.select_regions(np.stack([big, tiny, mid]), agg.AggregationOptions(min_area_fraction=0.05))
    assert [r.area for r in regions] == [80, 16, 200 - 80 - 16]
    rest = regions[-1]
    assert rest.uncovered and not any(r.uncovered for r in regions[:-1])
    assert np.array_equal(rest.mask, ~(big | mid))
    assert rest.box == (8, 0, 20, 10)  # x0, y0, x1, y1 of the uncovered pixels
    assert regions[0].box == (0, 0, 8, 10) and regions[1].box == (10, 2, 14, 6)


def test_no_uncovered_mask_when_masks_cover_everything_and_whole_image_when_nothing_is_kept():
    h, w = 6, 6
    left, right = _rect(h, w, 0, 6, 0, 3), _rect(h, w, 0, 6, 3, 6)
    regions = agg.select_regions(np.stack([left, right]), agg.AggregationOptions(min_area_fraction=0.0))
    assert len(regions) == 2 and not any(r.uncovered for r in regions)
    # No mask at all (the segmenter failed): the uncovered mask is the whole image.
    regions = agg.select_regions(np.zeros((0, h, w), bool), agg.AggregationOptions())
    assert len(regions) == 1 and regions[0].area == 36 and regions[0].box == (0, 0, 6, 6)


def test_crops_come_from_the_original_pixels_or_zero_filled_masks():
    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, (8, 12, 3), dtype=np.uint8)
    mask = np.zeros((8, 12), bool)
    mask[2:6, 3:9] = True
    mask[2, 3] = False  # not a rectangle: the box still spans it
    region = agg.select_regions(mask[None], agg.AggregationOptions(min_area_fraction=0.0, add_uncovered=False))[0]
    bbox = agg.crop_region(image, region, "bbox")
    assert np.array_equal(bbox, image[2:6, 3:9])
    masked = agg.crop_region(image, region, "mask")
    assert masked[0, 0].tolist() == [0, 0, 0] and np.array_equal(masked[1:], image[3:6, 3:9])


def test_aggregation_follows_the_paper_formulas():
    scores, areas = [7.0, 3.0, 5.0], [600, 300, 100]
    s_local = agg.local_score(scores, areas, "area")
    assert s_local == pytest.approx((7 * 600 + 3 * 300 + 5 * 100) / 1000)
    assert agg.local_score(scores, areas, "mean") == pytest.approx(5.0)
    s_seg = agg.seg_score(count=3, levels=7, c_max=12)
    assert s_seg == pytest.approx(3 * 7 / 12)
    s_global = 6.0
    assert agg.final_score(s_global, s_local, s_seg, "global+local") == pytest.approx((6.0 + 5.6) / 2 + 1.75)
    assert agg.final_score(s_global, s_local, None, "global+local") == pytest.approx(5.8)
    assert agg.final_score(None, s_local, s_seg, "local") == pytest.approx(5.6 + 1.75)
    assert agg.final_score(s_global, None, None, "global") == 6.0


def test_mask_count_variants():
    h, w = 4, 4
    masks = np.stack([_rect(h, w, 0, 4, 0, 2), _rect(h, w, 0, 1, 3, 4)])  # 8 px kept, 1 px dropped at t=0.1
    regions = agg.select_regions(masks, agg.AggregationOptions(min_area_fraction=0.1))
    assert agg.mask_count(len(masks), regions, "raw") == 2
    assert agg.mask_count(len(masks), regions, "kept") == 1
    assert agg.mask_count(len(masks), regions, "scored") == 2  # kept + uncovered


def test_prompt_holds_the_paper_standard():
    system, user = build_prompt(7, "word")
    assert "7: Perfect, 6: Excellent, 5: Good, 4: Fair, 3: Bad, 2: Poor, 1: Very Bad" in system
    assert user == "Please evaluate the quality of the image and score in [1, 2, 3, 4, 5, 6, 7]."
    for k in (3, 5, 9):
        system, user = build_prompt(k, "word")
        assert len(LEVEL_WORDS[k]) == k and f"{k}: {LEVEL_WORDS[k][-1]}" in system and f", {k}]" in user
    assert "4: Fair! The overall quality of the image is fair." in build_prompt(7, "sentence")[0]
    assert "Perfect" not in build_prompt(7, "number")[0]


@pytest.mark.parametrize("answer,expected", [
    ("6", 6), (" 6.", 6), ("Score: 6/7", 6), ("6: Excellent", 6), ("[3]", 3), ("7.0", 7), ("I'd say 2", 2),
    ("Good", None), ("", None), ("8", None), ("0", None), ("5.5", None), ("12", None),
])
def test_parse_answer(answer, expected):
    assert parse_answer(answer, 7) == expected


def test_the_judge_takes_the_backend_options_shape_and_old_spellings_are_refused():
    from iqabench.errors import IqaError
    from iqabench.models.scoring import BackendOptions
    from iqabench.plan import resolve_method

    judge = resolve_method("dog-iqa", {"judge": {"backend": "llava", "backend_path": "x/y", "resize": "pad"}}).options.judge
    assert isinstance(judge, BackendOptions) and set(type(judge).model_fields) == set(BackendOptions.model_fields)
    assert judge.backend_spec().arch == "llava" and judge.backend_spec().resize == "pad"
    default = resolve_method("dog-iqa", {}).options.judge
    assert (default.backend, default.backend_path) == ("owl3", "mPLUG/mPLUG-Owl3-7B-240728")  # in-process by default
    owl3 = resolve_method("dog-iqa", {"judge": {"backend": "owl3-worker", "worker_python": "/venv/bin/python"}}).options.judge
    assert (owl3.backend, owl3.backend_spec().worker_python) == ("owl3-worker", "/venv/bin/python")
    refused = [({"judge_worker_python": "/v/bin/python"}, "judge_worker_python is now judge.worker_python"),
               ({"judge_worker_host": "owl3"}, "judge_worker_host is now judge.worker_host"),
               ({"judge": {"arch": "llava"}}, "'arch' is now 'backend'"),
               ({"judge": {"path": "x/y"}}, "'path' is now 'backend_path'"),
               # validated as every backend's options are: the family row says a tiled processor takes resize=model only
               ({"judge": {"backend": "qwen2_5_vl", "resize": "crop"}}, "does not support resize=crop; allowed: model"),
               ({"judge": {"backend": "llava", "worker_python": "/v/bin/python"}}, "worker backends only")]
    for options, needle in refused:
        with pytest.raises(IqaError, match=re.escape(needle)) as info:
            resolve_method("dog-iqa", options)
        assert "\n" not in str(info.value)
