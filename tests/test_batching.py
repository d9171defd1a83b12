"""engine.serving.batching: generations of different prompts share one run and give each request its tokens alone."""
from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine import export_static
from engine.serving import batching, decode
from engine.serving.decode import SamplingOptions
from engine.serving.runtime import Bundle
from tests.helpers import build_tiny_static_bundle

OPTIONS = (SamplingOptions(temperature=1.0), SamplingOptions(temperature=0.7, top_k=8),
           SamplingOptions(temperature=0.0))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    directory = Path(shutil.copytree(build_tiny_static_bundle()[0], tmp_path_factory.mktemp("batch") / "bundle"))
    export_static.main(["--bundle", str(directory)])
    loaded = Bundle.load(directory)
    assert isinstance(loaded.runner, decode.StaticLvmRunner)
    return loaded


def prompts(bundle: Bundle) -> list[np.ndarray]:
    """Prompts of 1, 2 and 3 random pictures: three different lengths."""
    rng = np.random.default_rng(0)
    return [bundle.context_tokens(bundle.encode([rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                                                 for _ in range(count)])) for count in (1, 2, 3)]


def alone(bundle: Bundle, context: np.ndarray, n_samples: int, options: SamplingOptions, seed: int) -> np.ndarray:
    cache = bundle.runner.new_cache(len(context) + n_samples * bundle.tokens_per_image)
    return decode.generate(bundle.runner, context, cache, n_samples, bundle.tokens_per_image,
                           tuple(bundle.manifest["code_range"]), options, seed)


def test_prompts_of_different_lengths_get_the_tokens_they_get_alone(bundle: Bundle) -> None:
    contexts = prompts(bundle)
    assert len({len(context) for context in contexts}) == 3
    requests = [batching.Request(context, n, options, seed)
                for context, n, options, seed in zip(contexts, (2, 1, 3), OPTIONS, (11, 12, 13), strict=True)]
    batched = batching.generate_batch(bundle.runner, requests, bundle.tokens_per_image,
                                      tuple(bundle.manifest["code_range"]))
    for request, tokens in zip(requests, batched, strict=True):
        expected = alone(bundle, request.context, request.n_samples, request.options, request.seed)
        np.testing.assert_array_equal(tokens, expected)


def test_prompts_side_by_side_store_the_keys_and_values_they_store_alone(bundle: Bundle) -> None:
    # a trained model's attention is sharp enough that keys rotated at the wrong positions wreck every prompt after
    # the first (a random tiny one's tokens hardly change): so compare what the cache holds
    contexts = prompts(bundle)
    cache = bundle.runner.new_cache(sum(map(len, contexts)))
    batching.prefill_prompts(bundle.runner, cache, contexts, [1] * len(contexts))
    offset = 0
    for context in contexts:
        alone = bundle.runner.new_cache(len(context))
        decode.prefill(bundle.runner, context[None, :], alone)
        for batched, single in zip(cache.arrays, alone.arrays, strict=True):
            np.testing.assert_allclose(batched[:, :, offset : offset + len(context)], single[:, :, : len(context)],
                                       atol=1e-5)
        offset += len(context)


def test_a_guided_request_gets_the_tokens_it_gets_alone_beside_plain_ones(bundle: Bundle) -> None:
    contexts = prompts(bundle)
    last_image = contexts[0]  # a prompt of one picture: what the last image alone looks like
    guided = SamplingOptions(temperature=0.8, guidance=2.0)
    requests = [batching.Request(contexts[1], 2, OPTIONS[0], 21),
                batching.Request(contexts[2], 3, guided, 22, last_image=last_image)]
    assert requests[1].rows == 6 and requests[0].rows == 2
    batched = batching.generate_batch(bundle.runner, requests, bundle.tokens_per_image,
                                      tuple(bundle.manifest["code_range"]))
    np.testing.assert_array_equal(batched[0], alone(bundle, contexts[1], 2, OPTIONS[0], 21))
    cache = bundle.runner.new_cache(len(last_image) + 3 * bundle.tokens_per_image)
    own_cache = bundle.runner.new_cache(len(contexts[2]) + 3 * bundle.tokens_per_image)
    expected = decode.generate(bundle.runner, contexts[2], own_cache, 3, bundle.tokens_per_image,
                               tuple(bundle.manifest["code_range"]), guided, 22, last_image=(last_image, cache))
    np.testing.assert_array_equal(batched[1], expected)
    assert not np.array_equal(expected, alone(bundle, contexts[2], 3, SamplingOptions(temperature=0.8), 22))


def submit_together(batcher: batching.Batcher, calls: list[dict]) -> list[np.ndarray | Exception]:
    """Each call from its own thread at once; what each got back (tokens or the exception)."""
    outcomes: list[np.ndarray | Exception | None] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            outcomes[index] = batcher.generate(**calls[index])
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_a_request_with_bad_input_does_not_fail_its_batch_mates(bundle: Bundle) -> None:
    good, other, _ = prompts(bundle)
    bad = good.copy()
    bad[3] = bundle.manifest["codebook_size"] * 100  # no such token: the graph refuses it
    calls = [{"context": good, "n_samples": 2, "options": OPTIONS[0], "seed": 1},
             {"context": bad, "n_samples": 1, "options": OPTIONS[0], "seed": 2},
             {"context": other, "n_samples": 1, "options": OPTIONS[1], "seed": 3}]
    # the batch closes once its 4 rows are there, so the three calls share it whatever the threads' timing
    batcher = batching.Batcher(bundle.runner, bundle.tokens_per_image, tuple(bundle.manifest["code_range"]),
                               max_wait_s=60, max_rows=4)
    first, failed, third = submit_together(batcher, calls)
    assert isinstance(failed, Exception)
    np.testing.assert_array_equal(first, alone(bundle, good, 2, OPTIONS[0], 1))
    np.testing.assert_array_equal(third, alone(bundle, other, 1, OPTIONS[1], 3))
    assert batcher.batches == 4  # the shared batch, then each request alone


def test_a_request_stopped_by_its_progress_leaves_the_others_running(bundle: Bundle) -> None:
    contexts = prompts(bundle)

    def stop(fraction: float, message: str) -> None:
        if fraction > 0.5:
            raise TimeoutError("too slow")

    calls = [{"context": contexts[0], "n_samples": 1, "options": OPTIONS[0], "seed": 4, "progress": stop},
             {"context": contexts[2], "n_samples": 2, "options": OPTIONS[0], "seed": 5}]
    batcher = batching.Batcher(bundle.runner, bundle.tokens_per_image, tuple(bundle.manifest["code_range"]),
                               max_wait_s=60, max_rows=3)
    stopped, finished = submit_together(batcher, calls)
    assert isinstance(stopped, TimeoutError) and batcher.batches == 1
    np.testing.assert_array_equal(finished, alone(bundle, contexts[2], 2, OPTIONS[0], 5))


def test_a_request_too_long_for_the_graph_is_refused_at_once(bundle: Bundle) -> None:
    batcher = batching.Batcher(bundle.runner, bundle.tokens_per_image, tuple(bundle.manifest["code_range"]))
    with pytest.raises(ValueError, match="exceeds the graph's"):
        batcher.generate(prompts(bundle)[0], n_samples=1000, options=OPTIONS[0])
    assert batcher.batches == 0


def test_a_bundle_sharing_batches_answers_as_one_alone(bundle: Bundle) -> None:
    shared = Bundle.load(bundle.directory)
    assert shared.share_batches() and not Bundle.load(bundle.directory, static=False).share_batches()
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    for settings in ({"n_samples": 2, "seed": 3}, {"n_samples": 1, "temperature": 0.0},
                     {"n_samples": 2, "seed": 3, "guidance": 1.5}):
        first, second = shared.complete(images, **settings), bundle.complete(images, **settings)
        assert [a.tobytes() for a in first] == [b.tobytes() for b in second]
    assert shared.batcher.batches == 3


def test_a_guided_solve_too_large_to_share_the_graph_runs_alone(bundle: Bundle) -> None:
    shared = Bundle.load(bundle.directory)
    shared.share_batches()
    images = [np.random.default_rng(6).integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    context = shared.context_tokens(shared.encode(images))
    last_image = shared.context_tokens(shared.encode(images[-1:]))
    guided = SamplingOptions(temperature=1.0, guidance=1.5)
    n = 10  # its samples fit beside the prompt, but not twice over beside the prompt and the last image too
    assert shared.batcher.fits(context, n, last_image) and not shared.batcher.fits(context, n, last_image, guided)
    first = shared.complete(images, n_samples=n, seed=3, guidance=1.5)
    assert [a.tobytes() for a in first] == [b.tobytes() for b in bundle.complete(images, n_samples=n, seed=3,
                                                                                 guidance=1.5)]
    assert shared.batcher.batches == 0


def test_candidates_of_different_prompts_score_as_they_do_alone(bundle: Bundle) -> None:
    contexts = prompts(bundle)
    rng = np.random.default_rng(9)
    start, end = bundle.manifest["code_range"]
    candidates = [rng.integers(start, end, (count, bundle.tokens_per_image)) for count in (3, 1, 4)]
    requests = [batching.Request(context, 1, OPTIONS[0], candidates=part)
                for context, part in zip(contexts, candidates, strict=True)]
    batched = batching.score_batch(bundle.runner, requests, (start, end))
    for context, part, scores in zip(contexts, candidates, batched, strict=True):
        cache = bundle.runner.new_cache(len(context) + len(part) * bundle.tokens_per_image)
        np.testing.assert_allclose(scores, decode.score(bundle.runner, context, cache, part, (start, end)),
                                   rtol=1e-5)


def test_a_bundle_sharing_batches_scores_as_one_alone(bundle: Bundle) -> None:
    shared = Bundle.load(bundle.directory)
    shared.share_batches()
    rng = np.random.default_rng(6)
    images, candidates = ([rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(count)]
                          for count in (3, 20))  # more candidates than one call takes: scored in groups
    np.testing.assert_allclose(shared.score(images, candidates), bundle.score(images, candidates), rtol=1e-5)
    assert shared.batcher.batches >= 2


def test_the_app_solves_through_the_batcher(bundle: Bundle, tmp_path: Path) -> None:
    from app import solving
    from app.services import Services
    from app.settings import resolve

    settings = resolve({"data_dir": str(tmp_path), "bundle": str(bundle.directory)}, environ={})
    served = Services(settings, bank=None).bundle()
    assert served.batcher is not None
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    result = solving.solve(served, images, solving.SampleSettings(n_samples=2, seed=4))
    assert served.batcher.batches == 1
    assert [a.tobytes() for a in result.samples] == [b.tobytes() for b in bundle.complete(images, n_samples=2, seed=4)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_a_bundle_loaded_nicer_runs_its_threads_nicer_and_leaves_the_callers_alone(bundle: Bundle) -> None:
    def nice_of_threads() -> dict[int, int]:
        return {int(task): os.getpriority(os.PRIO_PROCESS, int(task)) for task in os.listdir("/proc/self/task")}

    before = nice_of_threads()
    bundle = Bundle.load(bundle.directory, niceness=7)
    assert bundle.share_batches()
    images = [np.full((16, 16, 3), value, np.uint8) for value in (0, 120, 250)]
    assert len(bundle.complete(images, n_samples=2, seed=1)) == 2
    threads = nice_of_threads()
    assert threads[threading.get_native_id()] == before[threading.get_native_id()]  # the caller's is untouched
    assert threads[bundle.batcher._worker.native_id] == 7
    new = {task: nice for task, nice in threads.items() if task not in before}
    assert sum(nice == 7 for nice in new.values()) >= 2, new  # the batcher and ONNX Runtime's pool threads
    ran_on = bundle.nicer.submit(threading.get_native_id).result()  # where encoder and decoder run
    assert nice_of_threads()[ran_on] == 7
