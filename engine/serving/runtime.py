"""Serving: load a model bundle and answer puzzles with ONNX Runtime (onnxruntime + numpy + PIL, never torch).

A bundle is a directory with manifest.json, encoder.onnx, decoder.onnx and lvm.onnx; its format (the manifest,
the file checks, the default directory) is engine/bundle.py's. `Bundle.load` checks every file against the sha256
and size in the manifest before creating a session.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from engine.bundle import BundleError, default_bundle_dir, static_graph_file, verify_bundle
from engine.serving import decode
from engine.serving.analogy_path import MAX_PROMPT, MIN_PROMPT, AnalogyPath, load_analogy_path
from engine.serving.batching import MAX_ROWS, MAX_WAIT_S, Batcher
from engine.serving.decode import MAX_GUIDANCE, Progress, SamplingOptions
from engine.serving.matrix_path import CONTEXT_PANELS, MatrixPath, load_matrix_path
from engine.serving.priority import nicer_threads, run_lowered
from engine.serving.sentences import Vocabulary, build_sentence, max_images
from engine.serving.sequence_path import MAX_FRAMES, MIN_FRAMES, SequencePath, load_sequence_path
from puzzles.images import ImageSource, to_rgb_array, to_square

log = logging.getLogger(__name__)

SCORING_RULES = ("sum", "pmi_last_panel", "pmi_channel")
# families whose prompts are (input, output) example pairs and a query: the only ones "pmi_channel" can score
PAIRED_FAMILIES = ("analogy", "grid")


# --- sessions -------------------------------------------------------------------------------------------------


def physical_cores() -> int:
    """Physical cores (not hyper-threads) from /proc/cpuinfo; os.cpu_count() where that is unavailable."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return max(1, os.cpu_count() or 1)
    cores, physical = set(), "0"
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            cores.add((physical, value.strip()))
    return max(1, len(cores) or os.cpu_count() or 1)


def session_options(spinning: bool = False) -> ort.SessionOptions:
    """CPU settings: one intra-op thread per physical core; no spinning unless asked.

    Spinning (idle pool threads busy-wait for the next parallel section instead of sleeping) pays only for many
    tiny runs in a row, the LVM's one-token decode steps (measured: int8 ms/token at batch 1 / 4 / 8 from
    0.24 / 0.58 / 1.29 to 0.16 / 0.39 / 0.94 on the 2-core CPU); the app runs one model call at a time, so
    the spinning threads do not compete with each other. The encoder and decoder run a few long graphs: no spin.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = physical_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3  # errors only: a missing GPU is reported through get_providers() instead
    return options


def cuda_device_present() -> bool:
    """True when ONNX Runtime sees a CUDA device (the GPU wheel lists CUDA even on machines without one)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    if not hasattr(ort, "get_ep_devices"):
        return True  # older releases: ask for CUDA and let get_providers() tell the truth
    return any(device.ep_name == "CUDAExecutionProvider" for device in ort.get_ep_devices())


def sampling_defaults(manifest: dict[str, Any], family: str | None = None) -> SamplingOptions:
    """The manifest's `"sampling"` settings (chosen by engine.sampling_sweep) with the guidance weight of a puzzle
    `family` (see `guidance_weights`); plain sampling without them."""
    values = manifest.get("sampling") or {}
    return SamplingOptions(temperature=float(values.get("temperature", 1.0)), top_k=int(values.get("top_k", 0)),
                           top_p=float(values.get("top_p", 1.0)),
                           guidance=guidance_weights(manifest).get(family or "", 0.0))


def guidance_weights(manifest: dict[str, Any]) -> dict[str, float]:
    """The manifest's sampling `"guidance"` as {family: weight}; families not named sample unguided."""
    value = (manifest.get("sampling") or {}).get("guidance") or {}
    if not isinstance(value, dict):
        raise ValueError(f"sampling guidance must be {{family: weight}}, not {value!r}")
    for family, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= MAX_GUIDANCE:
            raise ValueError(f"sampling guidance of {family!r} must be a number in [0, {MAX_GUIDANCE:g}], "
                             f"not {weight!r}")
    return {family: float(weight) for family, weight in value.items()}


def scoring_rules(manifest: dict[str, Any]) -> dict[str, str]:
    """The manifest's `"scoring"` as {family: rule} for the families whose rule is not "sum" (chosen by
    `engine.evaluate --write-scoring`); a single rule name holds for every family ("*")."""
    value = manifest.get("scoring") or {}
    rules = {"*": value} if isinstance(value, str) else value.get("rules", {}) if isinstance(value, dict) else None
    if not isinstance(rules, dict):
        raise ValueError(f"scoring must be a rule name or {{\"rules\": {{family: rule}}}}, not {value!r}")
    unknown = [rule for rule in rules.values() if rule not in SCORING_RULES]
    if unknown:
        raise ValueError(f"unknown scoring rule {unknown[0]!r} in the manifest; "
                         f"expected one of {', '.join(SCORING_RULES)}")
    unpaired = [family for family, rule in rules.items() if rule not in rules_for(family)]
    if unpaired:
        family = "every family" if unpaired[0] == "*" else unpaired[0]
        raise ValueError(f"the scoring rule {rules[unpaired[0]]!r} needs example pairs, which {family} prompts "
                         f"do not have (it suits {', '.join(PAIRED_FAMILIES)})")
    return dict(rules)


def rules_for(family: str | None) -> tuple[str, ...]:
    """The scoring rules that can rank a family's candidates ("pmi_channel" only where prompts are pairs)."""
    return SCORING_RULES if family in PAIRED_FAMILIES else tuple(r for r in SCORING_RULES if r != "pmi_channel")


def wanted_providers() -> list[str]:
    """CUDA first where a device is there, CPU always as the fallback."""
    if cuda_device_present():
        if hasattr(ort, "preload_dlls"):
            try:
                ort.preload_dlls()
            except Exception as error:  # a missing CUDA library must not stop the CPU path
                log.warning("could not preload CUDA libraries: %s", error)
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def create_session(path: Path, providers: Sequence[str], spinning: bool = False) -> ort.InferenceSession:
    session = ort.InferenceSession(str(path), sess_options=session_options(spinning), providers=list(providers))
    log.info("%s runs on %s", Path(path).name, session.get_providers()[0])
    return session


# --- images ---------------------------------------------------------------------------------------------------


def images_to_tensor(images: Sequence[ImageSource], size: int) -> np.ndarray:
    """Images -> float32 (N, 3, size, size) in [0, 1], the encoder's input."""
    if len(images) == 0:
        raise ValueError("no images given")
    squares = np.stack([to_square(to_rgb_array(image), size) for image in images])  # (N, H, W, 3)
    return np.ascontiguousarray(squares.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def tensor_to_images(tensor: np.ndarray) -> list[np.ndarray]:
    """float (N, 3, H, W) in [0, 1] -> list of uint8 (H, W, 3)."""
    pixels = np.clip(np.rint(tensor * 255.0), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(image.transpose(1, 2, 0)) for image in pixels]


# --- the bundle -----------------------------------------------------------------------------------------------


class Bundle:
    """A verified model bundle with its three ONNX Runtime sessions."""

    def __init__(self, directory: Path, manifest: dict[str, Any], providers: Sequence[str],
                 static: bool = True) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        try:
            self.scoring_rules = scoring_rules(manifest)  # read once: every ranking asks for its family's rule
            guidance_weights(manifest)  # a bad weight is refused at load, not at a visitor's Solve
        except ValueError as error:
            raise BundleError(f"{self.directory / 'manifest.json'}: {error}") from error
        self.encoder = create_session(self.directory / "encoder.onnx", providers)
        self.decoder = create_session(self.directory / "decoder.onnx", providers)
        try:  # the reader and reasoner that answer matrices from their attributes, when the bundle has them
            self.matrix_path = load_matrix_path(self.directory, manifest,
                                                lambda path: create_session(path, providers), self._run)
            self.sequence_path = load_sequence_path(self.directory, manifest,
                                                    lambda path: create_session(path, providers), self._run)
            self.analogy_path = load_analogy_path(self.directory, manifest,
                                                  lambda path: create_session(path, providers), self._run)
        except ValueError as error:
            raise BundleError(f"{self.directory / 'manifest.json'}: {error}") from error
        # the fused fixed-cache graph (engine.export_static) when the bundle has one: it replaces lvm.onnx
        self.static = static and static_graph_file(manifest) is not None
        self.lvm = create_session(self.directory / (static_graph_file(manifest) if self.static else "lvm.onnx"),
                                  providers, spinning=True)
        self.provider = self.lvm.get_providers()[0]
        device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        if self.static:
            kv = manifest["kv_cache"]
            layout = decode.CacheLayout(int(kv["n_layers"]), int(kv["n_kv_heads"]), int(kv["head_dim"]))
            try:
                self.runner: decode.LvmRunner | decode.StaticLvmRunner = decode.StaticLvmRunner(
                    self.lvm, layout, device, max_positions=int(manifest["static_kv"]["max_positions"]))
            except ValueError as error:
                raise BundleError(f"{self.directory}: {error}") from error
        else:
            self.runner = decode.make_runner(self.lvm)  # IO binding: the KV cache stays on the session's device
        self.batcher: Batcher | None = None  # set by share_batches: concurrent generations share runs
        self.niceness = 0  # the nice value of the model's threads (see `load`)
        self.nicer: ThreadPoolExecutor | None = None  # where encoder and decoder run when niceness > 0
        log.info("bundle %s loaded from %s on %s (%s)", self.name, self.directory, self.provider,
                 "fixed-size KV cache" if self.static else "growing KV cache")

    @classmethod
    def load(cls, directory: str | Path | None = None, providers: Sequence[str] | None = None,
             static: bool = True, niceness: int = 0) -> Bundle:
        """Read and verify a bundle (default: default_bundle_dir()); refuse it naming the first bad file.

        `static=False` serves lvm.onnx even when the bundle also has the fixed-cache graph (for comparisons).
        `niceness` > 0 runs the sessions' threads and the batcher's at that nice value (engine.serving.priority):
        a server's lighter requests then get the CPU first.
        """
        directory = Path(directory) if directory is not None else default_bundle_dir()
        manifest, providers = verify_bundle(directory), providers or wanted_providers()
        bundle = run_lowered(niceness, lambda: cls(directory, manifest, providers, static=static))
        bundle.niceness, bundle.nicer = niceness, nicer_threads(niceness, physical_cores())
        return bundle

    def share_batches(self, max_wait_s: float = MAX_WAIT_S, max_rows: int = MAX_ROWS) -> bool:
        """Let generations and scorings asked for at once from several threads run as one batch
        (engine.serving.batching); only the fixed-size cache graph takes a position per token, so the growing-cache
        graph keeps one call a run."""
        if isinstance(self.runner, decode.StaticLvmRunner) and self.batcher is None:
            self.batcher = Batcher(self.runner, self.tokens_per_image, tuple(self.manifest["code_range"]),
                                   max_wait_s, max_rows, niceness=self.niceness)
        return self.batcher is not None

    # manifest facts used on every call
    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    @property
    def tokens_per_image(self) -> int:
        return int(self.manifest["tokens_per_image"])

    @property
    def context_length(self) -> int:
        return int(self.manifest["context_length"])

    @property
    def sampling(self) -> SamplingOptions:
        """The sampling settings measured best for this bundle: the app's defaults (see `sampling_defaults`)."""
        return sampling_defaults(self.manifest)

    def sampling_for(self, family: str | None) -> SamplingOptions:
        """`sampling` with the guidance weight measured best for a puzzle family."""
        return sampling_defaults(self.manifest, family)

    @property
    def providers(self) -> dict[str, str]:
        """The provider each session really runs on."""
        sessions = {"encoder": self.encoder, "decoder": self.decoder, "lvm": self.lvm}
        return {name: session.get_providers()[0] for name, session in sessions.items()}

    # images <-> codes
    def encode(self, images: Sequence[ImageSource]) -> np.ndarray:
        """Images -> int64 codes (N, h*w)."""
        pixels = images_to_tensor(images, self.image_size)
        (codes,) = self._run(self.encoder, {self.encoder.get_inputs()[0].name: pixels})
        return codes.astype(np.int64)

    def decode(self, codes: np.ndarray) -> list[np.ndarray]:
        """int codes (N, h*w) -> list of uint8 RGB images (image_size, image_size, 3)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.tokens_per_image:
            raise ValueError(f"codes must be (N, {self.tokens_per_image}), got {codes.shape}")
        if codes.min() < 0 or codes.max() >= self.manifest["codebook_size"]:
            raise ValueError(f"codes must lie in [0, {self.manifest['codebook_size']})")
        (pixels,) = self._run(self.decoder, {self.decoder.get_inputs()[0].name: codes})
        return tensor_to_images(pixels)

    def _run(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """A session's run, on the nicer threads when there are any (the caller's thread takes part in a run)."""
        if self.nicer is None:
            return session.run(None, feeds)
        return self.nicer.submit(session.run, None, feeds).result()

    def roundtrip(self, images: Sequence[ImageSource]) -> list[np.ndarray]:
        """What the model sees: each image through the tokenizer and back."""
        return self.decode(self.encode(images))

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary(int(self.manifest["codebook_size"]), self.tokens_per_image)

    @property
    def max_images(self) -> int:
        """Most images a prompt may hold, the generated answer included (as in training, EOS included)."""
        return max_images(self.context_length, self.vocabulary, complete=True)

    # the sentence
    def context_tokens(self, codes: np.ndarray) -> np.ndarray:
        """Codes of the prompt images (N, h*w) -> the sentence prefix (L,) that the next image continues."""
        tokens = build_sentence(list(codes), self.vocabulary)
        if len(tokens) + self.tokens_per_image > self.context_length:
            raise ValueError(
                f"{len(codes)} images need {len(tokens) + self.tokens_per_image} tokens with the answer, "
                f"more than the model's context of {self.context_length}"
            )
        return tokens

    def _empty_cache(self) -> list[np.ndarray]:
        kv = self.manifest["kv_cache"]
        return decode.empty_cache(kv["n_layers"], kv["n_kv_heads"], kv["head_dim"])

    def _cache_for(self, context: np.ndarray, rows: int = 1, tokens_per_row: int | None = None,
                   ) -> list[np.ndarray] | decode.StaticCache:
        """The starting cache of a call on this context: a fixed-size buffer for the context plus one image (or
        `tokens_per_row` tokens) per row (sample or candidate), or a zero-length growing cache."""
        if isinstance(self.runner, decode.StaticLvmRunner):
            return self.runner.new_cache(len(context) + rows * (tokens_per_row or self.tokens_per_image))
        return self._empty_cache()

    def max_rows(self, context: np.ndarray, tokens_per_row: int | None = None) -> int:
        """How many samples or candidates (of one image each, or of `tokens_per_row` tokens) one call can run on
        this context (the fixed-size graph has a limit)."""
        if not isinstance(self.runner, decode.StaticLvmRunner) or self.runner.max_positions is None:
            return sys.maxsize
        return max(1, (self.runner.max_positions - len(context)) // (tokens_per_row or self.tokens_per_image))

    # answering
    def complete(
        self,
        images: Sequence[ImageSource],
        n_samples: int = 4,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        progress: Progress | None = None,
        guidance: float = 0.0,
        family: str | None = None,
    ) -> list[np.ndarray]:
        """Generate n_samples candidates for the image that follows `images` (one batch, reproducible by seed).

        `guidance` > 0 draws each code away from what the last image alone predicts (`decode.guided_logits`);
        `sampling_for(family)` gives the weight measured best for a puzzle family. A matrix (8 panels, `family`
        "matrix" or not given) whose reading passes the gate of the bundle's matrix path is answered there instead
        (`engine.serving.matrix_path`; temperature is its only setting), and so is a sequence (`family` "sequence")
        of frames of one object that the sequence path reads (`engine.serving.sequence_path`).
        """
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        options = SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, guidance=guidance)
        report = progress or (lambda fraction, message: None)
        path = self._matrix_path_for(images, family)
        if path is not None:
            report(0.0, "reading the panels' attributes")
            drawn = path.complete(images_to_tensor(images, self.image_size), n_samples, temperature, seed)
            if drawn is not None:
                report(1.0, "done")
                return drawn
        frames_path = self._sequence_path_for(images, family)
        if frames_path is not None:
            report(0.0, "reading the frames' attributes")
            drawn = frames_path.complete(images_to_tensor(images, self.image_size), n_samples, temperature, seed,
                                         self.image_size)
            if drawn is not None:
                report(1.0, "done")
                return drawn
        report(0.0, "tokenizing the prompt")
        codes = self.encode(images)
        context = self.context_tokens(codes)
        last_image = self.context_tokens(codes[-1:]) if guidance > 0 else None
        start, end = self.manifest["code_range"]

        def decoding(fraction: float, message: str) -> None:
            report(0.05 + 0.85 * fraction, f"generating: {message}")

        if n_samples > self.max_rows(context):
            raise ValueError(f"at most {self.max_rows(context)} samples at once for this prompt, got {n_samples}")
        if self.batcher is not None and self.batcher.fits(context, n_samples, last_image, options):
            tokens = self.batcher.generate(context, n_samples, options, seed, decoding, last_image)
        else:  # alone, or guided with too many samples to share the graph with its guide: a cache each
            guide = None if last_image is None else (last_image, self._cache_for(last_image, n_samples))
            tokens = decode.generate(
                self.runner, context, self._cache_for(context, n_samples), n_samples, self.tokens_per_image,
                (start, end), options, seed, decoding, guide,
            )
        report(0.9, "decoding images")
        result = self.decode(tokens)
        report(1.0, "done")
        return result

    def score(
        self, images: Sequence[ImageSource], candidates: Sequence[ImageSource], progress: Progress | None = None,
        scoring: str | None = None, family: str | None = None,
    ) -> np.ndarray:
        """Score of each candidate following `images` (float64, one per candidate); higher is likelier.

        The score is the candidate's log-likelihood after the prompt. Under the rule "pmi_last_panel" the
        log-likelihood after the last prompt image alone is subtracted, so a candidate is not favoured for being
        easy to predict anyway (a copy of a prompt image, a blank panel). "pmi_channel" adds to that how well the
        candidate, as an example, explains the given pairs (`_channel`), where the prompt is example pairs and a
        query (an odd count of 3 or more images; any other prompt has no pairs to read and gets "pmi_last_panel").
        The rule is the manifest's for the puzzle's `family` (`scoring_rules`); `scoring` overrides it
        (evaluation compares the rules). A matrix whose reading passes the matrix path's gate (see `complete`) is
        scored there, by the reasoner's log-likelihood of each candidate's attributes, whatever the rule; so is a
        sequence (`family` "sequence", 3 to 8 frames) on the bundle's sequence path
        (`engine.serving.sequence_path`). An analogy (`family` "analogy", 1 to 3 pairs and the query) adds the
        bundle's analogy path's weighted log-probabilities to the LVM's (`engine.serving.analogy_path`).
        """
        if len(candidates) == 0:
            raise ValueError("no candidates to score")
        scoring = scoring or self.scoring_rule(family)
        if scoring not in SCORING_RULES:
            raise ValueError(f"unknown scoring rule {scoring!r}; expected one of {', '.join(SCORING_RULES)}")
        report = progress or (lambda fraction, message: None)
        path = self._matrix_path_for(images, family)
        if path is not None:
            report(0.0, "reading the panels' attributes")
            scores = path.score(images_to_tensor([*images, *candidates], self.image_size))
            if scores is not None:
                report(1.0, "done")
                return scores
        frames_path = self._sequence_path_for(images, family)
        if frames_path is not None:
            report(0.0, "reading the frames' attributes")
            scores = frames_path.score(images_to_tensor([*images, *candidates], self.image_size), len(images))
            if scores is not None:
                report(1.0, "done")
                return scores
        report(0.0, "tokenizing")
        codes = self.encode([*images, *candidates])
        context = self.context_tokens(codes[: len(images)])
        candidate_tokens = codes[len(images) :]
        report(0.3, f"scoring {len(candidates)} candidates")
        scores = self._likelihoods(context, candidate_tokens)
        if scoring in ("pmi_last_panel", "pmi_channel"):
            last_image = self.context_tokens(codes[len(images) - 1 : len(images)])
            scores = scores - self._likelihoods(last_image, candidate_tokens)
            if scoring == "pmi_channel" and len(images) >= 3 and len(images) % 2 == 1:  # else no pairs to read
                report(0.6, "scoring the example pairs after each candidate")
                scores = scores + self._channel(last_image, codes[: len(images) - 1], candidate_tokens)
        relations = self._analogy_path_for(images, family)
        if relations is not None:
            report(0.9, "comparing each candidate's change with the examples'")
            scores = relations.combine(scores, images_to_tensor([*images, *candidates], self.image_size), len(images))
        report(1.0, "done")
        return scores

    def _channel(self, query: np.ndarray, examples: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Per candidate, the log-likelihood of the example pairs' codes in the sentence that starts with the query
        and the candidate: the puzzle read with the candidate's pair as its first example (a noisy channel: a
        candidate that carries the examples' change makes them likely; a copy of the query does not)."""
        continuations = np.stack([np.concatenate([candidate, examples.reshape(-1)]) for candidate in candidates])
        return self._token_log_probs(query, continuations)[:, self.tokens_per_image :].sum(axis=-1)

    def _likelihoods(self, context: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """decode.score over as many candidates at once as the cache takes (shared with other calls' when batched)."""
        if self.batcher is None:
            return self._token_log_probs(context, candidates).sum(axis=-1)
        group = self.max_rows(context)
        return np.concatenate([self.batcher.score(context, candidates[i : i + group])
                               for i in range(0, len(candidates), group)])

    def _token_log_probs(self, context: np.ndarray, continuations: np.ndarray) -> np.ndarray:
        """decode.token_log_probs over as many continuations at once as the cache takes."""
        group = self.max_rows(context, continuations.shape[1])
        parts = [continuations[i : i + group] for i in range(0, len(continuations), group)]
        code_range = tuple(self.manifest["code_range"])
        return np.concatenate([decode.token_log_probs(
            self.runner, context, self._cache_for(context, len(part), part.shape[1]), part, code_range)
            for part in parts])

    def answers_from_attributes(self, images: Sequence[ImageSource], family: str | None = None) -> bool:
        """Whether `complete` answers this prompt on the matrix or the sequence path (the reading passes; nothing
        drawn)."""
        path = self._matrix_path_for(images, family)
        if path is not None and path.read(images_to_tensor(images, self.image_size)) is not None:
            return True
        frames_path = self._sequence_path_for(images, family)
        return frames_path is not None and frames_path.drawable(images_to_tensor(images, self.image_size)) is not None

    def read_as_attributes(self, images: Sequence[ImageSource], family: str | None = None) -> list[np.ndarray] | None:
        """Where the matrix path answers this prompt, or the sequence path reads its frames of one object: each image
        drawn from what the path's reader read there."""
        path = self._matrix_path_for(images, family)
        if path is not None:
            return path.drawn_reading(images_to_tensor(images, self.image_size))
        frames_path = self._sequence_path_for(images, family)
        if frames_path is None:
            return None
        return frames_path.drawn_reading(images_to_tensor(images, self.image_size), self.image_size)

    def _matrix_path_for(self, images: Sequence[ImageSource], family: str | None) -> MatrixPath | None:
        """The matrix path, where the bundle has one and the prompt may be a matrix's 8 panels."""
        if self.matrix_path is None or family not in (None, "matrix") or len(images) != CONTEXT_PANELS:
            return None
        return self.matrix_path

    def _sequence_path_for(self, images: Sequence[ImageSource], family: str | None) -> SequencePath | None:
        """The sequence path, where the bundle has one and the prompt is a sequence's frames."""
        if self.sequence_path is None or family != "sequence" or not MIN_FRAMES <= len(images) <= MAX_FRAMES:
            return None
        return self.sequence_path

    def _analogy_path_for(self, images: Sequence[ImageSource], family: str | None) -> AnalogyPath | None:
        """The analogy path, where the bundle has one and the prompt is example pairs and a query."""
        if self.analogy_path is None or family != "analogy" or len(images) % 2 == 0:
            return None
        return self.analogy_path if MIN_PROMPT <= len(images) <= MAX_PROMPT else None

    def scoring_rule(self, family: str | None = None) -> str:
        """How `score` ranks the candidates of a puzzle family (see `scoring_rules`)."""
        return self.scoring_rules.get(family or "", self.scoring_rules.get("*", "sum"))
