"""CPU thread budgets: torch's intra-op threads and OpenCV's shared out among the streams of a server."""

from __future__ import annotations

import pytest

from streamvis.runtime.threads import apply_opencv_budget, apply_torch_budget, thread_budget, usable_cores


@pytest.mark.parametrize(("streams", "cores", "expected"), [(1, 8, 8), (3, 8, 2), (4, 2, 1), (16, 2, 1), (0, 4, 4)])
def test_the_cores_are_shared_out_among_the_streams_at_least_one_each(streams: int, cores: int,
                                                                      expected: int) -> None:
    assert thread_budget(streams, cores) == expected


def test_torch_on_the_cpu_gets_the_budget_and_other_runtimes_are_left_alone() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(max(2, usable_cores()))
        assert apply_torch_budget(4, ["onnxruntime:cpu"]) is None
        assert apply_torch_budget(4, ["torch:cuda:bfloat16"]) is None  # on a GPU its CPU threads hardly matter
        assert torch.get_num_threads() == max(2, usable_cores())
        assert apply_torch_budget(64, ["onnxruntime:cpu", "torch:cpu:float32"]) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_opencv_gets_the_budget_one_thread_without_its_pool_from_a_stream_per_core() -> None:
    import cv2

    before = cv2.getNumThreads()
    try:
        assert apply_opencv_budget(max(2, usable_cores()) * 8) == 1
        assert cv2.getNumThreads() == 1
        if usable_cores() >= 2:
            assert apply_opencv_budget(1) == usable_cores()
            assert cv2.getNumThreads() == usable_cores()
    finally:
        cv2.setNumThreads(before)
