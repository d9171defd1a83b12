"""Benchmark a model bundle on this machine: stage latencies, decode speed, engines, int8, floor.

    python -m engine.bench --bundle DIR --json OUT [--markdown OUT.md] [--quick]

The app end to end (start-up, memory, concurrent visitors, where a Solve's time goes) is `python -m app.bench`.

Prints a table and writes JSON (and optionally the Markdown table for the README). Timings are medians over
interleaved rounds, so engines compared with each other see the same machine load. PyTorch is imported only
for the PyTorch-eager baseline; without torch that row says so and the rest still runs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from engine import export_static
from engine.bundle import REQUIRED_FILES, bundle_weights, with_static_graph, write_manifest
from engine.serving import decode
from engine.serving.runtime import Bundle, physical_cores, session_options

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
FULL = {"repeats": 7, "rounds": 5, "bandwidth_mb": 512, "eval_n": 8}
QUICK = {"repeats": 2, "rounds": 2, "bandwidth_mb": 32, "eval_n": 1}
ANALOGY_IMAGES, MATRIX_CELLS, MATRIX_CANDIDATES = 3, 8, 8
TARGETS = (  # (key in the flat results, comparison, limit, what the issue asks)
    ("speedup_vs_pytorch", ">=", 2.5, "decode ms/token, ONNX Runtime vs PyTorch eager (batch 1)"),
    ("floor_ratio", "<=", 2.0, "decode ms/token vs the memory-bandwidth floor"),
    ("analogy_1_p50_s", "<=", 0.5, "analogy solve, 1 sample, p50 (s)"),
    ("analogy_4_over_1", "<=", 2.0, "analogy solve, 4 samples vs 1 sample"),
    ("matrix_p50_s", "<=", 1.0, "matrix score (8 candidates), p50 (s)"),
    ("analogy_rank_p50_s", "<=", 1.0, "analogy score (8 candidates, its family's rule), p50 (s)"),
)


# --- measuring ------------------------------------------------------------------------------------------------


def summary(seconds: list[float]) -> dict[str, float]:
    """Median and p95 in milliseconds of a list of durations in seconds."""
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median_ms": statistics.median(ordered) * 1e3, "p95_ms": p95 * 1e3, "n": len(ordered)}


def interleaved(functions: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Time every function once per round, round after round, so their ratios see the same machine load."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    durations: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            durations[name].append(time.perf_counter() - started)
    return {name: summary(values) for name, values in durations.items()}


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- inputs ---------------------------------------------------------------------------------------------------


def sample_images(count: int, size: int, seed: int) -> list[np.ndarray]:
    """Smooth random pictures (not noise, so PNG and the tokenizer see something image-like)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    return [np.kron(image, np.ones((size // 8, size // 8, 1), dtype=np.uint8)) for image in coarse]


def context_for(bundle: Bundle, n_images: int) -> np.ndarray:
    return bundle.context_tokens(bundle.encode(sample_images(n_images, bundle.image_size, seed=n_images)))


# --- the served stages ----------------------------------------------------------------------------------------


def decode_ms_per_token(runner: Any, start_cache: Callable[[int], Any], context: np.ndarray, batch: int,
                        n_tokens: int) -> float:
    """Prefill once, then time n_tokens one-token steps of a batch (greedy feed); ms per step."""
    logits, cache = decode.prefill(runner, context[None, :], start_cache(batch))
    cache = decode.expand_cache(cache, batch)
    tokens = np.repeat(logits.argmax(axis=-1), batch)
    started = time.perf_counter()
    for _ in range(n_tokens):
        logits, cache = decode.decode_one(runner, tokens, cache)
        tokens = logits.argmax(axis=-1)
    return (time.perf_counter() - started) / n_tokens * 1e3


def bundle_start_cache(bundle: Bundle, context: np.ndarray) -> Callable[[int], Any]:
    return lambda rows: bundle._cache_for(context, rows)


def measure_stages(bundle: Bundle, settings: dict[str, Any]) -> dict[str, Any]:
    """Latency of every stage of the served path, and of whole solves."""
    repeats, size = settings["repeats"], bundle.image_size
    raw = sample_images(ANALOGY_IMAGES, 4 * size, seed=1)  # uploads are larger than the model's images
    analogy = sample_images(ANALOGY_IMAGES, size, seed=2)
    n_cells = min(MATRIX_CELLS, bundle.max_images - 1)  # a tiny test bundle holds fewer images
    cells, candidates = sample_images(n_cells, size, seed=3), sample_images(MATRIX_CANDIDATES, size, seed=4)
    matrix_context = bundle.context_tokens(bundle.encode(cells))
    candidate_codes, code_range = bundle.encode(candidates), tuple(bundle.manifest["code_range"])
    from engine.serving.runtime import images_to_tensor

    pixels = images_to_tensor(analogy, size)
    context = context_for(bundle, ANALOGY_IMAGES)
    codes = bundle.encode(sample_images(4, size, seed=5))
    encoder_input = {bundle.encoder.get_inputs()[0].name: pixels}
    guidance = bundle.sampling_for("analogy").guidance  # as Solve on Play samples an analogy
    stages = interleaved({
        "preprocess_3_images": lambda: images_to_tensor(raw, size),
        "encoder_3_images": lambda: bundle.encoder.run(None, encoder_input),
        "prefill_3_images": lambda: decode.prefill(bundle.runner, context[None, :], bundle._cache_for(context)),
        "decoder_1_image": lambda: bundle.decode(codes[:1]),
        "decoder_4_images": lambda: bundle.decode(codes),
        "score_8_candidates_tokens_only": lambda: decode.score(
            bundle.runner, matrix_context, bundle._cache_for(matrix_context, len(candidate_codes)), candidate_codes,
            code_range),
        "analogy_solve_1_sample": lambda: bundle.complete(analogy, n_samples=1, seed=0, guidance=guidance),
        "analogy_solve_4_samples": lambda: bundle.complete(analogy, n_samples=4, seed=0, guidance=guidance),
        "matrix_score_8_candidates": lambda: bundle.score(cells, candidates),
        "analogy_score_8_candidates": lambda: bundle.score(analogy, candidates, family="analogy"),
    }, repeats)
    steps = bundle.tokens_per_image - 1
    runs: dict[str, list[float]] = {f"batch_{batch}": [] for batch in (1, 4, 8)}
    for _ in range(settings["rounds"]):
        for batch in (1, 4, 8):
            runs[f"batch_{batch}"].append(
                decode_ms_per_token(bundle.runner, bundle_start_cache(bundle, context), context, batch, steps))
    per_token = {name: statistics.median(values) for name, values in runs.items()}
    return {"stages": stages, "decode_ms_per_token": per_token}


# --- engines on the same weights ------------------------------------------------------------------------------


def torch_decoder(weights: dict[str, np.ndarray], config: dict[str, Any]) -> Any:
    """engine.model.LVM with these weights (torch imported here only), or None when torch is missing."""
    try:
        import torch

        from engine.model import LVM, LVMConfig
    except ImportError as error:
        log.warning("PyTorch baseline skipped: %s", error)
        return None
    model = LVM(LVMConfig.from_dict(config)).eval()
    model.load_state_dict({name: torch.tensor(array) for name, array in weights.items()})
    return model


class TorchRunner:
    """PyTorch eager with its growing KV cache, behind LvmRunner's forward signature, on `threads` threads."""

    def __init__(self, model: Any, threads: int) -> None:
        import torch

        self.model, self.torch, self.threads = model, torch, threads

    def forward(self, input_ids: np.ndarray, cache: Any) -> tuple[np.ndarray, Any]:
        with self.torch.inference_mode():
            logits, present = self.model(self.torch.from_numpy(np.ascontiguousarray(input_ids)), cache)
        return logits.numpy(), present

    def start(self) -> Any:
        return None


def lvm_session(path: Path) -> ort.InferenceSession:
    """An LVM graph on the CPU with the served settings."""
    options = session_options(spinning=True)
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def static_runner(path: Path, layout: decode.CacheLayout) -> decode.StaticLvmRunner:
    return decode.StaticLvmRunner(lvm_session(path), layout)


def growing_runner(path: Path) -> decode.LvmRunner:
    return decode.make_runner(lvm_session(path))


def compare_engines(bundle: Bundle, scratch: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """ms/token (batch 1) of every engine on the bundle's weights, measured in interleaved rounds."""
    manifest, kv = bundle.manifest, bundle.manifest["kv_cache"]
    layout = decode.CacheLayout(int(kv["n_layers"]), int(kv["n_kv_heads"]), int(kv["head_dim"]))
    weights = bundle_weights(bundle.directory)
    context = context_for(bundle, ANALOGY_IMAGES)
    positions = export_static.buffer_positions(manifest)
    engines: dict[str, tuple[Any, Callable[[int], Any]]] = {
        "onnxruntime_growing_cache": (growing_runner(bundle.directory / "lvm.onnx"),
                                      lambda rows: bundle._empty_cache()),
    }
    graphs: dict[str, Path] = {}
    static_error = None
    try:
        for precision in ("fp32", "int8"):
            graphs[precision] = export_static.write_static_graph(
                weights, manifest["lvm_config"], scratch / f"lvm_static_{precision}.onnx", int8=precision == "int8",
                max_positions=positions)
            runner = static_runner(graphs[precision], layout)
            engines[f"onnxruntime_static_{precision}"] = (
                runner, lambda rows, r=runner: r.new_cache(len(context) + rows * bundle.tokens_per_image))
    except ValueError as error:  # e.g. a head size GroupQueryAttention cannot take
        static_error = str(error)
        log.warning("no fixed-cache graph for this bundle: %s", error)
    model = torch_decoder(weights, manifest["lvm_config"])
    if model is not None:  # PyTorch gets its better thread count: on a busy CPU one thread can beat two
        for name, threads in (("pytorch_eager", physical_cores()), ("pytorch_eager_1_thread", 1)):
            torch_runner = TorchRunner(model, threads)
            engines[name] = (torch_runner, torch_runner.start)
    steps = bundle.tokens_per_image - 1
    runs: dict[str, list[float]] = {name: [] for name in engines}
    bandwidth = []  # measured between the engines, so the floor sees the load the engines saw
    for _ in tqdm(range(settings["rounds"]), desc="engines", leave=False):
        for name, (runner, start) in engines.items():
            runs[name].append(_engine_round(runner, start, context, steps))
        bandwidth.append(memory_bandwidth(settings["bandwidth_mb"], repeats=2))
    result: dict[str, Any] = {name: statistics.median(values) for name, values in runs.items()}
    result["runs_ms"] = runs
    result["bandwidth_bytes_per_s"] = statistics.median(bandwidth)
    result["torch"] = "missing: the PyTorch baseline was skipped" if model is None else _torch_version()
    result["static_graph_error"] = static_error
    result["graphs"] = {name: str(path) for name, path in graphs.items()}
    served = f"onnxruntime_static_{served_precision(bundle)}" if bundle.static else "onnxruntime_growing_cache"
    result["served_engine"] = served
    if model is not None:
        best_torch = min(result["pytorch_eager"], result["pytorch_eager_1_thread"])
        result["speedup_vs_pytorch"] = best_torch / result[served]
        result["speedup_fp32_vs_pytorch"] = best_torch / result.get(
            "onnxruntime_static_fp32", result["onnxruntime_growing_cache"])
    return result


def _torch_version() -> str:
    import torch

    return torch.__version__


def _engine_round(runner: Any, start: Callable[[int], Any], context: np.ndarray, steps: int) -> float:
    if isinstance(runner, TorchRunner):
        runner.torch.set_num_threads(runner.threads)
        logits, cache = runner.forward(context[None, :], None)
        token = logits[:, -1].argmax(axis=-1)
        started = time.perf_counter()
        for _ in range(steps):
            logits, cache = runner.forward(token[:, None], cache)
            token = logits[:, -1].argmax(axis=-1)
        return (time.perf_counter() - started) / steps * 1e3
    return decode_ms_per_token(runner, start, context, 1, steps)


# --- int8 accuracy, the bandwidth floor -----------------------------------------------------------------------


def variant_bundle(bundle: Bundle, graph: Path, precision: str, scratch: Path) -> Path:
    """A copy of the bundle that serves `graph` as its fixed-cache graph (its other files linked, the paths' graphs
    included)."""
    target = scratch / f"bundle_{precision}"
    target.mkdir(exist_ok=True)
    for name in set(REQUIRED_FILES) | set(bundle.manifest["files"]) - {export_static.STATIC_FILE}:
        link = target / name
        if not link.exists():
            os.symlink((bundle.directory / name).resolve(), link)
    shutil.copy(graph, target / export_static.STATIC_FILE)
    positions = export_static.buffer_positions(bundle.manifest)
    write_manifest(target, with_static_graph(bundle.manifest, target, export_static.STATIC_FILE, positions, precision))
    return target


def int8_accuracy(bundle: Bundle, graphs: dict[str, str], scratch: Path, settings: dict[str, Any],
                  spec: str) -> dict[str, Any]:
    """engine.evaluate's metrics for the fp32 and the int8 graph on the same puzzles, and their difference."""
    from engine.evaluate import evaluate, load_puzzles

    if set(graphs) != {"fp32", "int8"}:
        return {"skipped": "no fixed-cache graphs to compare"}
    puzzles = load_puzzles(spec, settings["eval_n"], bundle.image_size)
    reports, families = {}, {}
    for precision, graph in tqdm(graphs.items(), desc="int8 vs fp32 accuracy", leave=False):
        variant = Bundle.load(variant_bundle(bundle, Path(graph), precision, scratch))
        report = evaluate(variant, puzzles)
        reports[precision] = report["overall"]
        families[precision] = {family: metrics["multiple_choice_accuracy"]
                               for family, metrics in report["families"].items()}
    keys = ("multiple_choice_accuracy", "generative_accuracy", "psnr_generated")
    delta = {key: None if reports["fp32"][key] is None or reports["int8"][key] is None
             else reports["int8"][key] - reports["fp32"][key] for key in keys}
    return {"puzzles": spec, "n": len(puzzles), "fp32": {key: reports["fp32"][key] for key in keys},
            "int8": {key: reports["int8"][key] for key in keys}, "delta_int8_minus_fp32": delta,
            "multiple_choice_by_family": families}


def served_precision(bundle: Bundle) -> str:
    """The weights the served LVM graph holds: the fixed-cache graph's when it is served, else lvm.onnx's."""
    entry = bundle.manifest.get("static_kv") if bundle.static else None
    return (entry or bundle.manifest).get("weights", "fp32")


def int8_report(bundle: Bundle, engines: dict[str, Any], scratch: Path, settings: dict[str, Any],
                spec: str) -> dict[str, Any]:
    """Speed of the int8 graph against the fp32 one, and the evaluation accuracy of both."""
    quantized = bundle.manifest.get("weights") == "int8"
    graphs = engines.pop("graphs")
    return {"fp32_reference": "the int8 weights dequantized (the bundle holds no fp32 copy)" if quantized
            else "the bundle's fp32 weights", "fp32_ms_per_token": engines.get("onnxruntime_static_fp32"),
            "int8_ms_per_token": engines.get("onnxruntime_static_int8"),
            **int8_accuracy(bundle, graphs, scratch, settings, spec)}


def memory_bandwidth(megabytes: int, repeats: int = 5) -> float:
    """Bytes moved per second (read + write) by a numpy copy of a large array, best of `repeats`."""
    source = np.ones(megabytes * (1 << 20) // 8, dtype=np.float64)
    target = np.empty_like(source)
    np.copyto(target, source)  # touch the pages first
    best = min(_copy_seconds(source, target) for _ in range(repeats))
    return 2 * source.nbytes / best


def _copy_seconds(source: np.ndarray, target: np.ndarray) -> float:
    started = time.perf_counter()
    np.copyto(target, source)
    return time.perf_counter() - started


def weight_bytes(path: Path) -> int:
    import onnx

    model = onnx.load(str(path))
    return sum(onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer
               if not t.name.startswith("rotary."))


def bandwidth_floor(bundle: Bundle, engines: dict[str, Any], served_ms: float) -> dict[str, Any]:
    """The served graph's weight bytes over the measured bandwidth, against the served path's batch-1 ms/token.

    The served path is timed alone: in the interleaved engine rounds the other sessions' spinning pool threads
    (see engine.serving.runtime.session_options) share the two cores, which slows every engine there; that round's
    figure for the served engine is kept as `interleaved_ms_per_token`.
    """
    bandwidth, measured_ms = engines["bandwidth_bytes_per_s"], served_ms
    graph = bundle.directory / (export_static.STATIC_FILE if bundle.static else "lvm.onnx")
    size = weight_bytes(graph)
    floor_ms = size / bandwidth * 1e3
    return {"bandwidth_gb_s": bandwidth / 1e9, "weights_bytes": size, "weights_graph": graph.name,
            "floor_ms_per_token": floor_ms, "measured_ms_per_token": measured_ms, "measured_engine":
            engines["served_engine"], "interleaved_ms_per_token": engines[engines["served_engine"]],
            "ratio": measured_ms / floor_ms}


# --- the report -----------------------------------------------------------------------------------------------


def flat_results(report: dict[str, Any]) -> dict[str, float | None]:
    stages, engines = report["served"]["stages"], report["engines"]
    one, four = stages["analogy_solve_1_sample"]["median_ms"], stages["analogy_solve_4_samples"]["median_ms"]
    return {
        "speedup_vs_pytorch": engines.get("speedup_vs_pytorch"),
        "floor_ratio": report["floor"]["ratio"],
        "analogy_1_p50_s": one / 1e3,
        "analogy_4_over_1": four / one,
        "matrix_p50_s": stages["matrix_score_8_candidates"]["median_ms"] / 1e3,
        "analogy_rank_p50_s": stages["analogy_score_8_candidates"]["median_ms"] / 1e3,
    }


def check_targets(values: dict[str, float | None],
                  targets: tuple[tuple[str, str, float, str], ...] = TARGETS) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met (None: not measured)."""
    checks = []
    for key, comparison, limit, description in targets:
        value = values[key]
        met = None if value is None else (value >= limit if comparison == ">=" else value <= limit)
        checks.append({"target": description, "key": key, "limit": f"{comparison} {limit:g}", "measured": value,
                       "met": met})
    return checks


def fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    meta, served, engines = report["meta"], report["served"], report["engines"]
    lines = [f"Measured {meta['date']} on {meta['machine']} (load average before/after "
             f"{meta['load_before']} / {meta['load_after']}), bundle `{meta['bundle']}` ({meta['weights']}, "
             f"{meta['graph']}), ONNX Runtime {meta['onnxruntime']} on {meta['provider']}.",
             "", f"Command: `{meta['command']}`", "", "| stage | median ms | p95 ms |", "|---|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {fmt(s['median_ms'], 1)} | {fmt(s['p95_ms'], 1)} |"
              for name, s in served["stages"].items()]
    lines += [f"| decode, batch {key.split('_')[1]} (ms/token) | {fmt(value)} | |"
              for key, value in served["decode_ms_per_token"].items()]
    lines += ["", "| engine, same weights, batch 1 | ms/token |", "|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {fmt(engines[name])} |" for name in
              ("onnxruntime_static_fp32", "onnxruntime_static_int8", "onnxruntime_growing_cache", "pytorch_eager",
               "pytorch_eager_1_thread")
              if name in engines]
    floor = report["floor"]
    lines += ["", f"Memory bandwidth (numpy copy, read + write): {fmt(floor['bandwidth_gb_s'], 1)} GB/s; "
              f"{floor['weights_bytes'] / 1e6:.1f} MB of weights -> floor {fmt(floor['floor_ms_per_token'])} "
              f"ms/token; served path {fmt(floor['measured_ms_per_token'])} ({fmt(floor['ratio'], 1)}x the floor; "
              f"{fmt(floor['interleaved_ms_per_token'])} in the interleaved engine rounds)."]
    accuracy = report["int8"]
    if "delta_int8_minus_fp32" in accuracy:
        lines.append(f"int8 vs fp32 on {accuracy['n']} puzzles ({accuracy['puzzles']}): " + ", ".join(
            f"{key} {fmt(value, 3)}" for key, value in accuracy["delta_int8_minus_fp32"].items()) + " (int8 - fp32).")
        by_family = accuracy.get("multiple_choice_by_family", {})
        if by_family:
            lines += ["", "| multiple choice | fp32 | int8 |", "|---|---|---|"]
            lines += [f"| {family} | {fmt(100 * value, 1)}% | {fmt(100 * by_family['int8'].get(family, 0), 1)}% |"
                      for family, value in by_family["fp32"].items()]
    return "\n".join(lines + ["", targets_table(report["targets"])]) + "\n"


def targets_table(targets: list[dict[str, Any]]) -> str:
    lines = ["| target | limit | measured | met |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['limit']} | {fmt(t['measured'])} | {'n/a' if t['met'] is None else ('yes' if t['met'] else 'no')} |"  # noqa: E501
              for t in targets]
    return "\n".join(lines)


def run(bundle_dir: Path, quick: bool = False, eval_spec: str = "matrix,analogy",
        command: str = "", eval_n: int | None = None) -> dict[str, Any]:
    settings = {**(QUICK if quick else FULL), **({"eval_n": eval_n} if eval_n else {})}
    load_before = load_average()
    bundle = Bundle.load(bundle_dir)
    meta = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": f"{cpu_name()}, "
            f"{physical_cores()} physical cores, {os.cpu_count()} logical", "load_before": load_before,
            "bundle": bundle.name, "weights": served_precision(bundle), "provider": bundle.provider,
            "graph": "fixed-size KV cache" if bundle.static else "growing KV cache", "onnxruntime": ort.__version__,
            "python": platform.python_version(), "quick": quick, "command": command, "settings": dict(settings)}
    report: dict[str, Any] = {"meta": meta}
    with tempfile.TemporaryDirectory(prefix="gelato-bench-") as scratch_name:
        scratch = Path(scratch_name)
        sections: list[tuple[str, Callable[[], Any]]] = [
            ("served", lambda: measure_stages(bundle, settings)),
            ("engines", lambda: compare_engines(bundle, scratch, settings)),
            ("floor", lambda: bandwidth_floor(bundle, report["engines"],
                                              report["served"]["decode_ms_per_token"]["batch_1"])),
            ("int8", lambda: int8_report(bundle, report["engines"], scratch, settings, eval_spec)),
        ]
        meta["section_seconds"] = {}
        for name, section in tqdm(sections, desc="bench"):
            started = time.perf_counter()
            report[name] = section()
            meta["section_seconds"][name] = round(time.perf_counter() - started, 1)
    meta["load_after"] = load_average()
    report["targets"] = check_targets(flat_results(report))
    return report


def bench_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every benchmark command takes (this one and app.bench)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--bundle", required=True, help="model bundle directory")
    parser.add_argument("--json", required=True, help="where to write the JSON report")
    parser.add_argument("--markdown", default=None, help="also write the Markdown tables here (docs/benchmark.md)")
    parser.add_argument("--quick", action="store_true", help="few repeats and small loads (CI)")
    return parser


def write_report(report: dict[str, Any], table: str, args: argparse.Namespace, heading: str) -> None:
    """The JSON report, the Markdown tables when asked for, and the tables on stdout."""
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(f"# {heading}\n\n" + table)
    sys.stdout.write(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = bench_parser("python -m engine.bench", __doc__.splitlines()[0])
    parser.add_argument("--eval-puzzles", default="matrix,analogy", help="engine.evaluate spec for int8 accuracy")
    parser.add_argument("--eval-n", type=int, default=None, help="puzzles per spec entry for int8 accuracy")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    command = "python -m engine.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    report = run(Path(args.bundle), quick=args.quick, eval_spec=args.eval_puzzles,
                 command=command, eval_n=args.eval_n)
    write_report(report, markdown(report), args, "Benchmark")
    return report


if __name__ == "__main__":
    from puzzles.commands import main_exit

    main_exit(main, "python -m engine.bench")
