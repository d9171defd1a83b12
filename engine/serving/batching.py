"""Generations asked for at the same time share one ONNX Runtime run (numpy + onnxruntime, never torch).

The fixed-size cache graph (engine/serving/decode.py, `StaticLvmRunner`) takes a position id per token and an
attention bias, so prompts of different lengths can lie side by side in one cache: a prefill of two runs (the first
prompt, then the others; see `prefill_prompts`) fills it, each token seeing its own prompt only, and every decode
step appends one token per sample of every request, each sample attending to its own prompt and its own tokens. A
request's tokens are the ones it would get alone: its rows draw from its own generator in the same order, and the
other requests' keys are hidden (-inf bias). (Bit for bit with float weights; an int8 graph quantizes a run's
activations together, so a batch-mate can move a logit by a few hundredths.) A guided request also puts its last
image alone in the cache, with rows that follow its samples.

`Batcher` collects requests from concurrent threads: the first one waits at most `max_wait_s` for company, a
batch holds at most `max_rows` samples and what the graph's positions take, and a batch that fails is run again
one request at a time, so a request with bad input fails alone.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from engine.serving.decode import (
    Progress,
    SamplingOptions,
    StaticCache,
    StaticLvmRunner,
    decode_one,
    guided_logits,
    log_softmax,
    restrict_to_codes,
    sample_tokens,
)
from engine.serving.priority import lower_this_thread

log = logging.getLogger(__name__)

MAX_WAIT_S = 0.015  # how long the first request of a batch waits for others
MAX_ROWS = 16  # samples in one batch (every sample is a row of each decode step)


@dataclass
class Request:
    context: np.ndarray  # (L,) the prompt's tokens
    n_samples: int
    options: SamplingOptions
    seed: int = 0
    progress: Progress | None = None
    candidates: np.ndarray | None = None  # (C, T) tokens to score instead of generating
    last_image: np.ndarray | None = None  # (L',) the last prompt image alone: the weak prompt of guided sampling
    result: Future = field(default_factory=Future)

    @property
    def guided(self) -> bool:
        return self.candidates is None and self.options.guidance > 0

    @property
    def prompts(self) -> list[np.ndarray]:
        """The contexts this request puts in the cache: its prompt, and the last image alone when guided."""
        return [self.context, self.last_image] if self.guided else [self.context]

    @property
    def rows(self) -> int:
        """Cache rows: one per candidate, or one per sample (two when guided: the guide's rows follow along)."""
        return len(self.candidates) if self.candidates is not None else self.n_samples * len(self.prompts)


def prefill_prompts(runner: StaticLvmRunner, cache: StaticCache, contexts: list[np.ndarray],
                    counts: list[int]) -> np.ndarray:
    """Run the prompts side by side in an empty cache (each token sees its own prompt only), then branch
    `counts[i]` rows off prompt i; the logits after each prompt's last token (P, V).

    The first prompt runs alone and the others follow in a second run: in a run on an empty cache,
    GroupQueryAttention rotates the keys it stores at positions 0, 1, ... whatever `position_ids` say, which is
    right for the first prompt only; an appended run rotates them at their position ids.
    """
    lengths = np.array([len(context) for context in contexts])
    ends = np.cumsum(lengths)
    groups = [contexts[:1], contexts[1:]] if len(contexts) > 1 else [contexts]
    logits = np.concatenate([_append_prompts(runner, cache, group) for group in groups])
    cache.branch([(int(end - length), int(end)) for end, length in zip(ends, lengths, strict=True)], counts)
    return logits[ends - 1]


def _append_prompts(runner: StaticLvmRunner, cache: StaticCache, contexts: list[np.ndarray]) -> np.ndarray:
    """Append prompts side by side to the filled positions, each token seeing its own prompt's earlier tokens
    only, at positions from 0; the logits of every new token (sum of lengths, V)."""
    lengths = np.array([len(context) for context in contexts])
    new, start = int(lengths.sum()), cache.length
    total = start + new
    segment = np.repeat(np.arange(len(contexts)), lengths)  # (new,) which prompt each token belongs to
    allowed = np.zeros((new, total), dtype=bool)
    allowed[:, start:] = (segment[:, None] == segment[None, :]) & np.tri(new, dtype=bool)
    bias = np.where(allowed, np.float32(0), np.float32(-np.inf))[None, None]  # (1, 1, new, total)
    positions = np.concatenate([np.arange(length, dtype=np.int64) for length in lengths])[None, :]
    logits = np.zeros((1, new, runner.vocab_size), dtype=np.float32)
    ids = np.ascontiguousarray(np.concatenate(contexts)[None, :], dtype=np.int64)
    binding = runner.bind(cache.values, ids, positions, np.array([total - 1], np.int32), np.array(total, np.int32),
                          logits)
    binding.bind_ortvalue_input("attention_bias", ort.OrtValue.ortvalue_from_numpy(bias))
    runner.session.run_with_iobinding(binding)
    cache.length = total
    return logits[0]


def capacity(requests: list[Request], n_tokens: int) -> int:
    """Cache positions a batch needs: every prompt once, then one image per sample or candidate."""
    return sum(sum(map(len, r.prompts)) + r.rows * n_tokens for r in requests)


def score_batch(runner: StaticLvmRunner, requests: list[Request], code_range: tuple[int, int]) -> list[np.ndarray]:
    """Each request's candidate log-likelihoods (C,) after its prompt, as `decode.score` gives them alone."""
    counts = [r.rows for r in requests]
    stacked = np.concatenate([r.candidates for r in requests]).astype(np.int64)  # (sum C, T)
    cache = runner.new_cache(capacity(requests, stacked.shape[1]))
    first = np.repeat(prefill_prompts(runner, cache, [r.context for r in requests], counts), counts, axis=0)
    logits, _ = runner.forward(stacked, cache)  # (sum C, T, V)
    # token t is predicted by position t-1; token 0 by the prompt's last position
    predicting = np.concatenate([first[:, None, :], logits[:, :-1]], axis=1)
    start, end = code_range
    log_probs = log_softmax(predicting[..., start:end])
    scores = np.take_along_axis(log_probs, stacked[:, :, None] - start, axis=-1)[..., 0].sum(axis=-1)
    return np.split(scores, np.cumsum(counts)[:-1])


def generate_batch(runner: StaticLvmRunner, requests: list[Request], n_tokens: int,
                   code_range: tuple[int, int]) -> list[np.ndarray | Exception]:
    """Each request's (n_samples, n_tokens) tokens, or the exception its progress callback raised (a deadline).

    A guided request's rows after its last image alone sit beside its sample rows and take the same tokens.
    """
    prompts = [prompt for r in requests for prompt in r.prompts]
    counts = [r.n_samples for r in requests for _ in r.prompts]
    cache = runner.new_cache(capacity(requests, n_tokens))
    logits = np.repeat(prefill_prompts(runner, cache, prompts, counts), counts, axis=0)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    spans = iter(slice(int(start), int(end)) for start, end in zip(bounds[:-1], bounds[1:], strict=True))
    rows = [[next(spans) for _ in r.prompts] for r in requests]  # per request: its samples' rows[, its guide's]
    rngs = [np.random.default_rng(r.seed) for r in requests]
    tokens = np.zeros((int(bounds[-1]), n_tokens), dtype=np.int64)
    failed: dict[int, Exception] = {}
    for step in range(n_tokens):
        for index, request in enumerate(requests):
            part, *guide = rows[index]
            allowed = (guided_logits(logits[part], logits[guide[0]], code_range, request.options.guidance) if guide
                       else restrict_to_codes(logits[part], *code_range))
            tokens[part, step] = sample_tokens(allowed, request.options, rngs[index])
            for follower in guide:
                tokens[follower, step] = tokens[part, step]
        if step + 1 < n_tokens:  # the last token's logits are never needed
            logits, cache = decode_one(runner, tokens[:, step], cache)
        for index, request in enumerate(requests):
            if request.progress is not None and index not in failed:
                try:
                    request.progress((step + 1) / n_tokens, f"token {step + 1}/{n_tokens}")
                except Exception as error:  # this request is stopped; its batch-mates go on
                    failed[index] = error
        if len(failed) == len(requests):
            break
    return [failed.get(index, tokens[part[0]]) for index, part in enumerate(rows)]


class Batcher:
    """Collects `generate` and `score` calls from many threads into batches (one kind each) run by one worker
    thread."""

    def __init__(self, runner: StaticLvmRunner, n_tokens: int, code_range: tuple[int, int],
                 max_wait_s: float = MAX_WAIT_S, max_rows: int = MAX_ROWS, niceness: int = 0) -> None:
        self.runner, self.n_tokens, self.code_range = runner, n_tokens, tuple(code_range)
        self.max_wait_s, self.max_rows, self.niceness = max_wait_s, max_rows, niceness
        self.max_positions = runner.max_positions or np.iinfo(np.int64).max
        self._queue: queue.Queue[Request] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # batches run so far (for tests and logs)

    def generate(self, context: np.ndarray, n_samples: int, options: SamplingOptions, seed: int = 0,
                 progress: Progress | None = None, last_image: np.ndarray | None = None) -> np.ndarray:
        """(n_samples, n_tokens) tokens continuing `context`, as `decode.generate` gives them for this seed (guided
        sampling needs `last_image`, the last prompt image's tokens alone)."""
        if options.guidance > 0 and (last_image is None or len(last_image) == 0):
            raise ValueError("guided sampling needs the last prompt image's tokens")
        guide = None if last_image is None else np.asarray(last_image, dtype=np.int64)
        return self._submit(Request(np.asarray(context, dtype=np.int64), int(n_samples), options, seed, progress,
                                    last_image=guide))

    def fits(self, context: np.ndarray, n_samples: int, last_image: np.ndarray | None = None,
             options: SamplingOptions | None = None) -> bool:
        """Whether a generation fits the graph's positions alone (a guided one takes twice the rows)."""
        request = Request(np.asarray(context), int(n_samples), options or SamplingOptions(), last_image=last_image)
        return capacity([request], self.n_tokens) <= self.max_positions

    def score(self, context: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Log-likelihood of each candidate's tokens (C, T) after `context`, as `decode.score` gives it."""
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or candidates.shape[1] != self.n_tokens:
            raise ValueError(f"candidates must be (C, {self.n_tokens}) tokens, got {candidates.shape}")
        return self._submit(Request(np.asarray(context, dtype=np.int64), 1, SamplingOptions(), candidates=candidates))

    def _submit(self, request: Request) -> np.ndarray:
        if request.rows < 1 or request.context.ndim != 1 or len(request.context) == 0:
            raise ValueError("a batch request needs a non-empty prompt and at least one sample or candidate")
        if capacity([request], self.n_tokens) > self.max_positions:
            raise ValueError(f"a prompt of {len(request.context)} tokens with {request.rows} samples or candidates "
                             f"exceeds the graph's {self.max_positions} positions")
        self._start()
        self._queue.put(request)
        return request.result.result()

    def _start(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name="lvm-batcher", daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        lower_this_thread(self.niceness)
        carried: Request | None = None
        while True:
            batch = [carried or self._queue.get()]
            carried = self._collect(batch)
            self._run(batch)

    def _collect(self, batch: list[Request]) -> Request | None:
        """Add requests that arrive within the wait and fit; the first that does not fit is returned (it starts
        the next batch)."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            rows = sum(r.rows for r in batch) + request.rows
            scoring = (request.candidates is None) != (batch[0].candidates is None)  # one kind a batch
            if scoring or rows > self.max_rows or capacity([*batch, request], self.n_tokens) > self.max_positions:
                return request
            batch.append(request)
            if rows == self.max_rows:
                return None

    def _run(self, batch: list[Request]) -> None:
        self.batches += 1
        try:
            if batch[0].candidates is None:
                outcomes = generate_batch(self.runner, batch, self.n_tokens, self.code_range)
            else:
                outcomes = score_batch(self.runner, batch, self.code_range)
        except Exception as error:  # one request's bad input: run each alone so only that one fails
            if len(batch) > 1:
                log.warning("a batch of %d generations failed (%s); running them one by one", len(batch), error)
                for request in batch:
                    self._run([request])
                return
            outcomes = [error]
        for request, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                request.result.set_exception(outcome)
            else:
                request.result.set_result(outcome)
