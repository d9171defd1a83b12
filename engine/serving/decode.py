"""The LVM generation and scoring loop on ONNX Runtime, as small functions (numpy + onnxruntime, never torch).

The lvm.onnx graph takes `input_ids` [B, T] plus `past_key_<i>` / `past_value_<i>` [B, kv_heads, P, head_dim]
for every layer and returns `logits` [B, T, V] plus `present_key_<i>` / `present_value_<i>` [B, kv_heads, P+T,
head_dim]. Positions are implied by P, so a batch always shares one length: that is what lets the context be
prefilled once and its cache be repeated for n samples or n candidates.

lvm_static.onnx (engine.export_static) takes a fixed-size cache instead, written in place, in which n samples
or candidates share the prompt's positions: `StaticLvmRunner` drives it with the same `forward(ids, cache)`
signature, so every loop below runs on either graph. On a GPU both keep the cache on the device (IO binding);
the fixed shapes and addresses of the static cache are also what ONNX Runtime's CUDA graphs need.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
# flat: key_0, value_0, key_1, value_1, ... each [B, kv_heads, P, head_dim]; numpy arrays, or OrtValues that
# stay where the session put them (the GPU under CUDA) when the runner uses IO binding
KVCache = list[np.ndarray | ort.OrtValue]


MAX_GUIDANCE = 10.0  # guidance weights a manifest or a caller may ask for (the shipped one is 2; 3 already loses)


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 keeps every token
    top_p: float = 1.0  # nucleus mass kept; 1.0 keeps every token
    guidance: float = 0.0  # how far each code is pushed from what the last prompt image alone predicts (0: not)

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0.0 <= self.guidance <= MAX_GUIDANCE:
            raise ValueError(f"guidance must be in [0, {MAX_GUIDANCE:g}], got {self.guidance}")


# --- logits -> probabilities -> tokens -------------------------------------------------------------------------


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis, computed in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def restrict_to_codes(logits: np.ndarray, code_start: int, code_end: int) -> np.ndarray:
    """Only image codes may be generated inside an image: special tokens get -inf."""
    masked = np.full_like(logits, -np.inf, dtype=np.float64)
    masked[..., code_start:code_end] = logits[..., code_start:code_end]
    return masked


def guided_logits(logits: np.ndarray, last_image_logits: np.ndarray, code_range: tuple[int, int],
                  guidance: float) -> np.ndarray:
    """(1 + g) log p(code | prompt) - g log p(code | last prompt image alone), over the image codes (-inf elsewhere).

    What the whole prompt predicts, less what its last image predicts anyway: a sample is drawn away from a copy
    of that image, the way the "pmi_last_panel" scoring rule ranks candidates (classifier-free guidance with the
    last image as the weak prompt).
    """
    start, end = code_range
    mixed = np.full(logits.shape, -np.inf, dtype=np.float64)
    mixed[..., start:end] = ((1.0 + guidance) * log_softmax(logits[..., start:end])
                             - guidance * log_softmax(last_image_logits[..., start:end]))
    return mixed


def filter_top_k(logits: np.ndarray, top_k: int) -> np.ndarray:
    """Keep the top_k largest logits of each row (ties at the threshold are kept)."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    threshold = np.sort(logits, axis=-1)[..., -top_k][..., None]  # (B, 1)
    return np.where(logits < threshold, -np.inf, logits)


def filter_top_p(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Nucleus filtering: keep the smallest set of tokens whose probability mass reaches top_p."""
    if top_p >= 1.0:
        return logits
    order = np.argsort(-logits, axis=-1)  # (B, V) most likely first
    sorted_probs = np.exp(log_softmax(np.take_along_axis(logits, order, axis=-1)))
    mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
    drop_sorted = mass_before >= top_p  # the most likely token is never dropped
    drop = np.zeros_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)
    return np.where(drop, -np.inf, logits)


def sample_tokens(logits: np.ndarray, options: SamplingOptions, rng: np.random.Generator) -> np.ndarray:
    """(B, V) logits -> (B,) int64 tokens; temperature 0 is greedy (argmax, first on ties)."""
    if options.temperature == 0:
        return logits.argmax(axis=-1).astype(np.int64)
    scaled = filter_top_p(filter_top_k(logits / options.temperature, options.top_k), options.top_p)
    probs = np.exp(log_softmax(scaled))  # (B, V)
    # inverse-CDF sampling: one uniform draw per row keeps a fixed seed reproducible across batch sizes
    cumulative = np.cumsum(probs, axis=-1)
    draws = rng.random(len(probs)) * cumulative[:, -1]
    tokens = (cumulative < draws[:, None]).sum(axis=-1)
    return np.minimum(tokens, probs.shape[-1] - 1).astype(np.int64)


# --- the KV cache ---------------------------------------------------------------------------------------------


def empty_cache(n_layers: int, n_kv_heads: int, head_dim: int, batch: int = 1) -> KVCache:
    """A zero-length cache for the first call (prefill)."""
    return [np.zeros((batch, n_kv_heads, 0, head_dim), dtype=np.float32) for _ in range(2 * n_layers)]


def to_numpy(tensor: np.ndarray | ort.OrtValue) -> np.ndarray:
    return tensor.numpy() if isinstance(tensor, ort.OrtValue) else tensor


def expand_cache(cache: KVCache | StaticCache, batch: int) -> KVCache | StaticCache:
    """A batch-1 cache for `batch` rows that continue the same context; done once per call (a growing cache is
    repeated along the batch axis, a fixed-size cache shares its filled positions)."""
    if isinstance(cache, StaticCache):
        return cache.expand(batch)
    arrays = [to_numpy(tensor) for tensor in cache]
    if arrays[0].shape[0] != 1:
        raise ValueError(f"only a batch-1 cache can be expanded, got batch {arrays[0].shape[0]}")
    return [np.repeat(tensor, batch, axis=0) for tensor in arrays]


# --- running the graph ----------------------------------------------------------------------------------------


class LvmRunner:
    """Feeds ids and a flat KV cache to an lvm.onnx session; the names come from the graph itself."""

    def __init__(self, session) -> None:  # an onnxruntime.InferenceSession
        self.session = session
        self.past_names = [i.name for i in session.get_inputs() if i.name != "input_ids"]
        self.output_names = [o.name for o in session.get_outputs()]
        if "input_ids" not in {i.name for i in session.get_inputs()} or self.output_names[0] != "logits":
            raise ValueError("lvm.onnx must take 'input_ids' and return 'logits' first")
        if len(self.past_names) != len(self.output_names) - 1:
            raise ValueError("lvm.onnx must return one present tensor per past tensor")

    def forward(self, input_ids: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]:
        """input_ids (B, T) + cache (B, ., P, .) -> logits (B, T, V), cache (B, ., P+T, .)."""
        feeds = {"input_ids": np.ascontiguousarray(input_ids, dtype=np.int64)}
        if len(cache) != len(self.past_names):
            raise ValueError(f"the cache has {len(cache)} tensors; lvm.onnx takes {len(self.past_names)}")
        feeds.update(zip(self.past_names, cache, strict=True))
        outputs = self.session.run(self.output_names, feeds)
        return outputs[0], outputs[1:]


class BoundLvmRunner(LvmRunner):
    """The same graph through IO binding: the cache goes from one step's outputs to the next step's inputs as
    OrtValues on the session's device, so only the ids (in) and the logits (out) cross to the host."""

    def __init__(self, session, device: str = "cpu") -> None:
        super().__init__(session)
        self.device = device  # "cuda" when the session runs on CUDAExecutionProvider

    def forward(self, input_ids: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]:
        if len(cache) != len(self.past_names):
            raise ValueError(f"the cache has {len(cache)} tensors; lvm.onnx takes {len(self.past_names)}")
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(input_ids, dtype=np.int64))
        for name, tensor in zip(self.past_names, cache, strict=True):
            if not isinstance(tensor, ort.OrtValue):
                tensor = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(tensor), self.device, 0)
            binding.bind_ortvalue_input(name, tensor)
        binding.bind_output("logits", "cpu")  # sampling happens on the host
        for name in self.output_names[1:]:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return outputs[0].numpy(), outputs[1:]


# --- the fixed-size cache of lvm_static.onnx (engine.export_static) --------------------------------------------


@dataclass(frozen=True)
class CacheLayout:
    n_layers: int
    n_kv_heads: int
    head_dim: int


class StaticCache:
    """KV buffers [1, kv_heads, capacity, head_dim] for one generation or scoring call, allocated once.

    The buffers hold one shared prefix (the prompt) and then the rows that branch off it (samples or candidates),
    each call's new tokens appended row after row. Every row attends to the prefix and to its own tokens only:
    an attention bias hides the other rows, and position ids give each row's tokens the positions that follow the
    prefix. So n rows never copy the prefix, and each step runs the rows' queries as one batch-1 sequence, which
    GroupQueryAttention does with one product per head instead of one per row (int8 on the 2-core CPU, ms per
    step at 1 / 4 / 8 rows: about 0.24 / 0.34 / 0.70 shared, 0.2 / 0.8-1.1 / 1.7-2.1 as a batch of rows).
    The graph writes each step's keys/values in place (the buffers are bound as both past input and present
    output). Each call owns its cache, which keeps concurrent calls on one session apart.
    """

    def __init__(self, layout: CacheLayout, capacity: int, device: str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"a cache needs capacity >= 1, got {capacity}")
        self.layout, self.capacity, self.device = layout, capacity, device
        shape = (1, layout.n_kv_heads, capacity, layout.head_dim)
        self.arrays = [np.zeros(shape, dtype=np.float32) for _ in range(2 * layout.n_layers)]
        # on the CPU the OrtValue shares the numpy memory; elsewhere it is a device copy the graph writes into
        self.values = [ort.OrtValue.ortvalue_from_numpy(array, device, 0) for array in self.arrays]
        self.length = 0  # buffer positions filled so far
        self.rows = 1
        self.row_length = 0  # tokens each row holds, prefix included: the next token's position
        self.visible: np.ndarray | None = None  # (rows, capacity): the positions each row attends to
        self._step: _DecodeStep | None = None

    def expand(self, rows: int) -> StaticCache:
        """Branch `rows` rows off the filled positions, which become their shared prefix (nothing is copied)."""
        if self.rows != 1:
            raise ValueError(f"only a one-row cache can be expanded, this one has {self.rows} rows")
        if rows > 1:
            self.rows, self.visible = rows, np.zeros((rows, self.capacity), dtype=bool)
            self.visible[:, : self.length] = True
            self._step = None  # a step binding is shaped for one row
        return self

    def append_bias(self, new_per_row: int) -> np.ndarray:
        """Attention bias [1, 1, rows * new, total] for appending `new_per_row` tokens to every row (0 where a
        query may look, -inf elsewhere); marks the new positions as their rows' own."""
        start, rows = self.length, self.rows
        total = start + rows * new_per_row
        if rows == 1 and self.visible is None:  # one sequence: the graph's causal mask is all it needs
            return np.zeros((1, 1, new_per_row, total), dtype=np.float32)
        allowed = np.zeros((rows, new_per_row, total), dtype=bool)
        allowed[:, :, :start] = self.visible[:, None, :start]
        own = np.zeros((rows, new_per_row, rows, new_per_row), dtype=bool)  # row r's queries see row r's keys
        index = np.arange(rows)
        own[index, :, index, :] = np.tril(np.ones((new_per_row, new_per_row), dtype=bool))
        allowed[:, :, start:] = own.reshape(rows, new_per_row, rows * new_per_row)
        self.visible[:, start:total] = np.repeat(np.eye(rows, dtype=bool), new_per_row, axis=1)
        bias = np.where(allowed, np.float32(0), np.float32(-np.inf))
        return bias.reshape(1, 1, rows * new_per_row, total)

    def branch(self, spans: list[tuple[int, int]], counts: list[int]) -> StaticCache:
        """Branch rows off several prompts that lie side by side in the filled positions (engine.serving.batching):
        `counts[i]` rows attend to the buffer span `spans[i]` = (start, end) and continue from its length."""
        if self.rows != 1 or len(spans) != len(counts) or min(counts, default=0) < 1:
            raise ValueError("branch a one-row cache into at least one row per prompt")
        self.rows, self._step = sum(counts), None
        self.visible = np.zeros((self.rows, self.capacity), dtype=bool)
        self.row_length = np.repeat([end - start for start, end in spans], counts).astype(np.int64)
        for row, (start, end) in enumerate(np.repeat(np.array(spans), counts, axis=0)):
            self.visible[row, start:end] = True
        return self

    def positions(self, new_per_row: int) -> np.ndarray:
        """Position ids [1, rows * new] of the appended tokens: each row continues from its own length (one
        length for all rows, or one per row after `branch`)."""
        lengths = np.broadcast_to(np.asarray(self.row_length, dtype=np.int64), (self.rows,))
        return (lengths[:, None] + np.arange(new_per_row, dtype=np.int64)).reshape(1, -1)


class _DecodeStep:
    """An IO binding for one-token steps, made once per cache: every step rewrites the ids, positions and lengths
    in place (the bound numpy arrays), binds the step's attention bias and reads the logits from a bound array."""

    def __init__(self, runner: StaticLvmRunner, cache: StaticCache) -> None:
        self.ids = np.zeros((1, cache.rows), dtype=np.int64)
        self.position_ids = np.zeros((1, cache.rows), dtype=np.int64)
        self.seqlens = np.zeros(1, dtype=np.int32)
        self.total = np.zeros((), dtype=np.int32)
        self.logits = np.zeros((1, cache.rows, runner.vocab_size), dtype=np.float32)
        self.binding = runner.bind(cache.values, self.ids, self.position_ids, self.seqlens, self.total, self.logits)


class StaticLvmRunner:
    """Runs lvm_static.onnx: ids in, logits out, the cache written in place through IO binding.

    `forward(ids, cache)` has LvmRunner's signature (row b of ids extends row b of the cache), so
    prefill/decode_one/decode_n/generate/score take either.
    """

    def __init__(self, session, layout: CacheLayout, device: str = "cpu", max_positions: int | None = None) -> None:
        self.session, self.layout, self.device = session, layout, device
        names = {i.name for i in session.get_inputs()}
        wanted = {"input_ids", "position_ids", "attention_bias", "seqlens_k", "total_sequence_length"}
        if not wanted <= names:
            raise ValueError(f"lvm_static.onnx must take {', '.join(sorted(wanted))}; it lacks "
                             f"{', '.join(sorted(wanted - names))} (rewrite it: python -m engine.export_static)")
        self.max_positions = max_positions  # the graph's rotary table: no cache may hold more
        self.past_names = [f"past_{kind}_{layer}" for layer in range(layout.n_layers) for kind in ("key", "value")]
        self.present_names = [name.replace("past_", "present_", 1) for name in self.past_names]
        self.vocab_size = int(session.get_outputs()[0].shape[-1])

    def new_cache(self, capacity: int) -> StaticCache:
        if self.max_positions is not None and capacity > self.max_positions:
            raise ValueError(f"a cache of {capacity} positions exceeds the graph's {self.max_positions}; "
                             "ask for fewer samples or candidates at once")
        return StaticCache(self.layout, capacity, self.device)

    def bind(self, values: list[ort.OrtValue], ids: np.ndarray, position_ids: np.ndarray, seqlens: np.ndarray,
             total: np.ndarray, logits: np.ndarray):
        binding = self.session.io_binding()
        for name, array in (("input_ids", ids), ("position_ids", position_ids), ("seqlens_k", seqlens),
                            ("total_sequence_length", total)):
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        for past, present, value in zip(self.past_names, self.present_names, values, strict=True):
            binding.bind_ortvalue_input(past, value)
            binding.bind_ortvalue_output(present, value)  # the same buffer: written in place
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        return binding

    def forward(self, input_ids: np.ndarray, cache: StaticCache) -> tuple[np.ndarray, StaticCache]:
        """input_ids (rows, T), one row per cache row, appended -> logits (rows, T, V), the same cache."""
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        rows, new_len = input_ids.shape
        if not isinstance(cache, StaticCache) or rows != cache.rows:
            raise ValueError(f"ids of {rows} rows need a StaticCache with that many rows")
        total = cache.length + rows * new_len
        if total > cache.capacity:
            raise ValueError(f"{total} positions exceed the cache capacity of {cache.capacity}")
        positions, bias = cache.positions(new_len), cache.append_bias(new_len)
        if new_len == 1:
            logits = self._step(input_ids, positions, bias, cache, total)
        else:
            logits = np.zeros((1, rows * new_len, self.vocab_size), dtype=np.float32)
            binding = self.bind(cache.values, input_ids.reshape(1, -1), positions, np.array([total - 1], np.int32),
                                np.array(total, dtype=np.int32), logits)
            binding.bind_ortvalue_input("attention_bias", ort.OrtValue.ortvalue_from_numpy(bias))
            self.session.run_with_iobinding(binding)
        cache.length, cache.row_length = total, cache.row_length + new_len
        return logits.reshape(rows, new_len, self.vocab_size), cache

    def _step(self, input_ids: np.ndarray, positions: np.ndarray, bias: np.ndarray, cache: StaticCache,
              total: int) -> np.ndarray:
        if cache._step is None:
            cache._step = _DecodeStep(self, cache)
        step = cache._step
        step.ids[0] = input_ids[:, 0]
        step.position_ids[...] = positions
        step.seqlens[...] = total - 1
        step.total[...] = total
        step.binding.bind_ortvalue_input("attention_bias", ort.OrtValue.ortvalue_from_numpy(bias))
        self.session.run_with_iobinding(step.binding)
        return step.logits.copy()


def make_runner(session, io_binding: bool = True) -> LvmRunner:
    """The runner for a session: IO binding on the device the session really got, or plain run()."""
    if not io_binding:
        return LvmRunner(session)
    device = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
    return BoundLvmRunner(session, device)


def prefill(runner: LvmRunner, context: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]:
    """Run the whole context (1, L) once; return the last position's logits (1, V) and the cache."""
    logits, cache = runner.forward(context, cache)
    return logits[:, -1, :], cache


def decode_one(runner: LvmRunner, tokens: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]:
    """Feed one token per row (B,) and return the next logits (B, V) and the grown cache."""
    logits, cache = runner.forward(tokens[:, None], cache)
    return logits[:, -1, :], cache


def decode_n(
    runner: LvmRunner,
    first_logits: np.ndarray,
    cache: KVCache,
    n_tokens: int,
    code_range: tuple[int, int],
    options: SamplingOptions,
    rng: np.random.Generator,
    progress: Progress | None = None,
    guide: tuple[np.ndarray, KVCache] | None = None,
) -> np.ndarray:
    """Sample n_tokens per row from logits (B, V) onwards; return the token ids (B, n_tokens).

    `guide` is the logits and cache after the last prompt image alone (same rows): each step then samples from
    `guided_logits` at options.guidance, and the guide's rows take the same tokens.
    """
    tokens = np.zeros((len(first_logits), n_tokens), dtype=np.int64)
    logits = first_logits
    guide_logits, guide_cache = guide if guide is not None else (None, None)
    for step in range(n_tokens):
        allowed = (restrict_to_codes(logits, *code_range) if guide_logits is None
                   else guided_logits(logits, guide_logits, code_range, options.guidance))
        tokens[:, step] = sample_tokens(allowed, options, rng)
        if step + 1 < n_tokens:  # the last token's logits are never needed
            logits, cache = decode_one(runner, tokens[:, step], cache)
            if guide_cache is not None:
                guide_logits, guide_cache = decode_one(runner, tokens[:, step], guide_cache)
        if progress is not None:
            progress((step + 1) / n_tokens, f"token {step + 1}/{n_tokens}")
    return tokens


def generate(
    runner: LvmRunner,
    context: np.ndarray,
    empty: KVCache,
    n_samples: int,
    n_tokens: int,
    code_range: tuple[int, int],
    options: SamplingOptions,
    seed: int = 0,
    progress: Progress | None = None,
    last_image: tuple[np.ndarray, KVCache] | None = None,
) -> np.ndarray:
    """Prefill the context (L,) once, then decode n_samples continuations as one batch -> (n_samples, n_tokens).

    Guided sampling (options.guidance > 0) needs `last_image`: the tokens of the last prompt image alone, as a
    context of its own, and an empty cache for them and the samples.
    """
    logits, cache = prefill(runner, context[None, :], empty)
    logits, cache = np.repeat(logits, n_samples, axis=0), expand_cache(cache, n_samples)
    guide = None
    if options.guidance > 0:
        if last_image is None:
            raise ValueError("guided sampling needs the last prompt image's tokens")
        guide_logits, guide_cache = prefill(runner, last_image[0][None, :], last_image[1])
        guide = np.repeat(guide_logits, n_samples, axis=0), expand_cache(guide_cache, n_samples)
    return decode_n(runner, logits, cache, n_tokens, code_range, options, np.random.default_rng(seed), progress,
                    guide)


def token_log_probs(
    runner: LvmRunner, context: np.ndarray, empty: KVCache, continuations: np.ndarray, code_range: tuple[int, int]
) -> np.ndarray:
    """Log-probability of every token of each continuation (C, T) after the context (L,): (C, T) float; the C
    continuations run as one batch.

    Probabilities are normalised over the image codes only (as in training's evaluation): inside an image
    nothing else can come.
    """
    first_logits, cache = prefill(runner, context[None, :], empty)
    logits, _ = runner.forward(continuations, expand_cache(cache, len(continuations)))  # (C, T, V)
    # token t is predicted by position t-1; token 0 by the context's last position
    predicting = np.concatenate([np.repeat(first_logits[:, None, :], len(continuations), axis=0), logits[:, :-1]],
                                axis=1)
    start, end = code_range
    log_probs = log_softmax(predicting[..., start:end])  # (C, T, codes)
    return np.take_along_axis(log_probs, continuations[:, :, None] - start, axis=-1)[..., 0]


def score(
    runner: LvmRunner, context: np.ndarray, empty: KVCache, candidates: np.ndarray, code_range: tuple[int, int]
) -> np.ndarray:
    """Log-likelihood of each candidate's tokens (C, T) after the context (L,) (see `token_log_probs`)."""
    return token_log_probs(runner, context, empty, candidates, code_range).sum(axis=-1)
