"""Florence-2: output parsing (token strings to boxes), prompts, class ids, and the tiny random model end to end."""

from __future__ import annotations

import numpy as np
import pytest
from support import TinyModels

from streamvis.config import Florence2Config
from streamvis.detection import load_detector
from streamvis.detection.florence2 import (
    ClassVocabulary,
    answer_to_boxes,
    boxes_to_detections,
    is_token_fragment,
    split_prompt,
    task_text,
)
from streamvis.errors import ModelError


@pytest.fixture(scope="module")
def processor(tiny_models: TinyModels):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_models.florence)


# (task, generated text, frame (w, h), expected boxes, expected labels); a 1000x1000 frame makes bins pixels.
PARSE_CASES = [
    ("<OD>", "</s><s>person<loc_100><loc_200><loc_300><loc_400>car<loc_0><loc_0><loc_999><loc_999></s>",
     (1000, 1000), [[100, 200, 300, 400], [0, 0, 999, 999]], ["person", "car"]),
    ("<OD>", "</s><s>dog<loc_100><loc_200><loc_300><loc_400></s>", (2000, 500),
     [[201, 100, 601, 200]], ["dog"]),  # bins are scaled per axis: (bin + 0.5) * size / 1000, truncated
    ("<OD>", "</s><s></s>", (1000, 1000), [], []),
    ("<OD>", "</s><s>person<loc_100><loc_200></s>", (1000, 1000), [], []),  # a box cut short is not a box
    ("<DENSE_REGION_CAPTION>", "</s><s>a red car<loc_10><loc_20><loc_30><loc_40></s>", (1000, 1000),
     [[10, 20, 30, 40]], ["a red car"]),
    ("<CAPTION_TO_PHRASE_GROUNDING>",
     "</s><s>a dog<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>a cat<loc_9><loc_10><loc_11><loc_12></s>",
     (1000, 1000), [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], ["a dog", "a dog", "a cat"]),
    ("<OPEN_VOCABULARY_DETECTION>", "</s><s>red car<loc_100><loc_100><loc_200><loc_300></s>", (1000, 1000),
     [[100, 100, 200, 300]], ["red car"]),
    ("<OCR_WITH_REGION>",
     "</s><s>STOP<loc_100><loc_200><loc_300><loc_200><loc_300><loc_400><loc_100><loc_400></s>", (1000, 1000),
     [[100, 200, 300, 400]], ["STOP"]),
]


@pytest.mark.parametrize(("task", "text", "size_wh", "boxes", "labels"), PARSE_CASES)
def test_generated_text_to_boxes(processor, task, text, size_wh, boxes, labels) -> None:
    answer = processor.post_process_generation(text, task=task, image_size=size_wh)[task]
    xyxy, got_labels = answer_to_boxes(task, answer)
    assert got_labels == labels
    np.testing.assert_allclose(xyxy, np.array(boxes, np.float32).reshape(-1, 4), atol=1.0)


def test_malformed_output_gives_no_detections(processor) -> None:
    """What an untrained model writes (location tokens only) must not become 'loc_876>' objects."""
    text = "</s><loc_876><loc_788><loc_631><loc_163><loc_383><loc_349><loc_181><loc_235><loc_86></s>"
    answer = processor.post_process_generation(text, task="<OD>", image_size=(640, 480))["<OD>"]
    xyxy, labels = answer_to_boxes("<OD>", answer)
    assert len(labels) > 0  # the processor's parser does yield these...
    detections = boxes_to_detections(xyxy, labels, ClassVocabulary(), (640, 480))
    assert len(detections) == 0  # ...and they are dropped here


@pytest.mark.parametrize(("label", "fragment"), [("loc_876>", True), ("OD>", True), ("/loc_3", True),
                                                 ("person", False), ("traffic light", False), ("loc", False)])
def test_token_fragments(label: str, fragment: bool) -> None:
    assert is_token_fragment(label) is fragment


@pytest.mark.parametrize(("prompt", "phrases"), [
    ("person. dog. red car", ["person", "dog", "red car"]),
    ("  person .. person.  dog  ", ["person", "dog"]),
    ("a; b\nc", ["a", "b", "c"]),
    ("", []),
])
def test_split_prompt(prompt: str, phrases: list[str]) -> None:
    assert split_prompt(prompt) == phrases


def test_task_text() -> None:
    assert task_text("<OD>", "ignored") == "<OD>"
    assert task_text("<CAPTION_TO_PHRASE_GROUNDING>", " a dog ") == "<CAPTION_TO_PHRASE_GROUNDING>a dog"
    with pytest.raises(ModelError, match="not a detection task"):
        task_text("<CAPTION>", "")


def test_class_ids_are_stable_and_clipped() -> None:
    vocabulary = ClassVocabulary(["person", "dog"])
    xyxy = np.array([[-5, 10, 50, 60], [10, 10, 700, 500], [5, 5, 5, 9], [1, 1, 9, 9]], np.float32)
    detections = boxes_to_detections(xyxy, ["Dog", "cat", "person", ""], vocabulary, (640, 480))
    assert list(detections.data["class_name"]) == ["Dog", "cat"]  # zero-width box and empty label dropped
    assert detections.class_id.tolist() == [1, 2]  # 'Dog' is 'dog' (id 1); 'cat' is new (id 2)
    assert detections.xyxy.tolist() == [[0, 10, 50, 60], [10, 10, 640, 480]]
    assert vocabulary.names == ["person", "dog", "cat"]


def test_prompted_task_needs_prompt() -> None:
    with pytest.raises(ValueError, match="needs a text prompt"):
        Florence2Config(task="<OPEN_VOCABULARY_DETECTION>")
    assert Florence2Config().model == "florence-community/Florence-2-base"


def test_tiny_model_detects_batched_and_single_alike(tiny_models: TinyModels, person_video) -> None:
    """The tiny random model runs the real path: processor, generate, parse; batching changes nothing."""
    import av

    with av.open(str(person_video)) as container:
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(3), container.decode(video=0), strict=False)]
    detector = load_detector(Florence2Config(model=str(tiny_models.florence), batch_size=3, max_new_tokens=16,
                                             device="cpu"))
    texts = detector.generate_text(frames)
    assert len(texts) == 3 and all("<loc_" in text for text in texts)  # it generated location tokens
    assert set(detector.last_timings_ms) == {"preprocess", "generate"}
    batched = detector.detect_batch(frames)
    single = [detector.detect(frame) for frame in frames]
    assert [len(d) for d in batched] == [len(d) for d in single]
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a.xyxy, b.xyxy)
        assert a.xyxy.dtype == np.float32 and a.confidence is not None


def test_missing_folder_and_offline_hub_id(tmp_path, monkeypatch) -> None:
    with pytest.raises(ModelError, match=r"folder \./no-such-model does not exist"):
        load_detector(Florence2Config(model="./no-such-model"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        load_detector(Florence2Config(model="nobody/not-cached-florence"))
    message = str(info.value)
    assert "nobody/not-cached-florence" in message and "offline" in message and "hf download" in message
    assert "\n" not in message
