"""Side by side: evaluation on Ray (cam_core.scale) vs the local run, same images, one run.

    nice -n 10 python bench/bench_ray.py [--images 300] [--repeats 1] [--json F]

CPU part (always): maps/s of ``evaluate`` (local, torch on every core) and of
``evaluate_on_ray`` (a local Ray instance on the same cores, one actor per core, one torch
thread each), in the order local, Ray, local, Ray, … (``--repeats`` pairs), each run on a fresh
output folder. The Ray time includes starting the actor pool (each actor imports torch and
cam_core and receives the model), which every job pays once; the rate after the first finished
batch leaves that start out (the steady rate a long job runs at). ``ray.init`` is reported apart
(a cluster is started once). Images: the first ``--images`` NEU-DET images in the evaluation's
class-stratified order, or synthetic ones when NEU-DET is absent. Model: the bundled default model
(``models/neu-boxsup-patch-resnet18``), Grad-CAM at its default layer.

GPU part (only when CUDA is available): for the default model and a ResNet-50 at 224 px, batched
Grad-CAM throughput (maps/s) of the local engine and of a Ray job with one GPU actor, against the
plain forward + backward floor of the same batch measured in the same run.

Absolute times are noisy on a shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cam_core.data import find_neu_det, load_dataset  # noqa: E402
from cam_core.evaluation import EvalConfig, evaluate, stratified_order  # noqa: E402
from cam_core.explain import Explainer  # noqa: E402
from cam_core.models import ModelCard, build_model, load_model, save_model  # noqa: E402
from cam_core.scale import evaluate_on_ray, write_manifest  # noqa: E402
from cam_core.synth import write_voc_folder  # noqa: E402

DEFAULT_MODEL = ROOT / "models" / "neu-boxsup-patch-resnet18" / "model.pt"


def _images(n: int, tmp: Path) -> tuple[Path, str]:
    """A Parquet manifest of ``n`` images (NEU-DET, else synthetic) and where they come from."""
    neu = find_neu_det()
    if neu is not None:
        samples, source = load_dataset(neu).samples, f"NEU-DET ({neu})"
    else:
        folder = write_voc_folder(tmp / "synth", -(-n // 6), seed=0, size=200)
        samples, source = load_dataset(folder).samples, "synthetic (NEU-DET absent)"
    chosen = stratified_order(samples)[:n]
    return write_manifest(chosen, tmp / "images.parquet"), f"{source}, {len(chosen)} images"


def _maps(result) -> int:
    return sum(1 for r in result.rows if not r["error"] and r["method"] in result.config.methods)


def _shutdown(ray) -> None:
    """ray.shutdown(), then end any of our Ray workers left behind (an actor still importing when
    its raylet went keeps running as an orphan)."""
    me = os.getpid()
    ours = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            p = int(pid)
            while p > 1 and p != me:
                p = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if p == me and title.startswith("ray::"):
            ours.append(int(pid))
    ray.shutdown()
    time.sleep(2)
    for pid in ours:
        try:
            if Path(f"/proc/{pid}/cmdline").read_text(errors="replace").startswith("ray::"):
                os.kill(pid, 9)
        except OSError:
            pass


def _steady(ticks: list[tuple[float, int]], maps_per_image: float) -> float:
    """maps/s between the first and the last progress tick (the pool's start left out)."""
    (t0, d0), (t1, d1) = ticks[0], ticks[-1]
    return (d1 - d0) * maps_per_image / (t1 - t0) if t1 > t0 else float("nan")


def cpu_part(args, tmp: Path) -> dict:
    import ray

    manifest, source = _images(args.images, tmp)
    loaded = load_model(DEFAULT_MODEL)
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    explainer = Explainer(loaded.model, loaded.card, batch_size=args.batch)
    base = EvalConfig(
        data=str(manifest),
        checkpoint=str(DEFAULT_MODEL),
        split=None,
        methods=("gradcam",),
        batch_size=args.batch,
    )
    t = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="error")
    init_s = time.perf_counter() - t
    from cam_core.scale.manifest import load_items

    samples = [it.sample for it in load_items(str(manifest), None)[0]]
    runs: dict[str, list[float]] = {"local": [], "ray": []}
    steady: dict[str, list[float]] = {"local": [], "ray": []}
    maps = {}
    cpu_per_map: list[float] = []  # CPU seconds per map of the local run (all its threads)
    for i in range(args.repeats):
        ticks: list[tuple[float, int]] = []
        t, cpu = time.perf_counter(), time.process_time()
        local = evaluate(
            base,
            explainer=explainer,
            samples=samples,
            progress=lambda d, n, m, ticks=ticks: ticks.append((time.perf_counter(), d)),
        )
        runs["local"].append(time.perf_counter() - t)
        maps["local"] = _maps(local)
        cpu_per_map.append((time.process_time() - cpu) / maps["local"])
        steady["local"].append(_steady(ticks, maps["local"] / len(samples)))
        print(f"local  #{i}: {runs['local'][-1]:.1f} s, {maps['local']} maps", flush=True)
        cfg = dataclasses.replace(base, out=str(tmp / f"ray{i}"))
        ticks = []
        t = time.perf_counter()
        run = evaluate_on_ray(
            cfg,
            explainer,
            progress=lambda d, n, m, ticks=ticks: ticks.append((time.perf_counter(), d)),
        )
        runs["ray"].append(time.perf_counter() - t)
        maps["ray"] = _maps(run.result)
        steady["ray"].append(_steady(ticks, maps["ray"] / len(samples)))
        print(
            f"ray    #{i}: {runs['ray'][-1]:.1f} s, {maps['ray']} maps, "
            f"{run.workers} {run.device} actors, first batch after {ticks[0][0] - t:.1f} s",
            flush=True,
        )
    _shutdown(ray)
    rate = {k: maps[k] / statistics.median(v) for k, v in runs.items()}
    rate_steady = {k: statistics.median(v) for k, v in steady.items()}
    return {
        "images": source,
        "cores": cores,
        "load_average_1min_at_end": os.getloadavg()[0],
        "ray_init_s": round(init_s, 2),
        "seconds": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "maps_per_s": {k: round(v, 2) for k, v in rate.items()},
        "ray / local": round(rate["ray"] / rate["local"], 3),
        "maps_per_s_after_first_batch": {k: round(v, 2) for k, v in rate_steady.items()},
        "ray / local after first batch": round(rate_steady["ray"] / rate_steady["local"], 3),
        "maps_per_s_per_ray_actor_after_first_batch": round(rate_steady["ray"] / cores, 2),
        "local_cpu_seconds_per_map": round(statistics.median(cpu_per_map), 3),
    }


def _gpu_model(name: str, tmp: Path) -> Path:
    if name == "default":
        return DEFAULT_MODEL
    torch.manual_seed(0)
    classes = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
    card = ModelCard(
        name="resnet50-224",
        arch="resnet50",
        classes=classes,
        multilabel=False,
        input_size=224,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    return save_model(build_model("resnet50", len(classes)), card, tmp / "r50" / "model.pt")


def gpu_part(args, tmp: Path) -> dict:
    import numpy as np
    import ray

    from cam_core.models import preprocess

    manifest, source = _images(args.images, tmp)
    out: dict = {"images": source, "device": torch.cuda.get_device_name(0)}
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="error")
    for name in ("default", "resnet50"):
        path = _gpu_model(name, tmp)
        loaded = load_model(path, device="cuda")
        ex = Explainer(loaded.model, loaded.card, batch_size=args.gpu_batch)
        cfg = EvalConfig(
            data=str(manifest),
            checkpoint=str(path),
            split=None,
            methods=("gradcam",),
            batch_size=args.gpu_batch,
        )
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (200, 200), dtype=np.uint8) for _ in range(args.gpu_batch)]
        x = preprocess(images, loaded.card).cuda()

        def fwd_bwd(model=loaded.model, x=x):
            model.zero_grad(set_to_none=True)
            model(x)[:, 0].sum().backward()

        def engine(ex=ex, images=images):
            ex.explain(images, ["gradcam"], targets=[[0]] * len(images))

        rates = {}
        for label, fn in (("floor", fwd_bwd), ("engine", engine)):
            fn()
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(args.gpu_repeats):
                fn()
            torch.cuda.synchronize()
            rates[label] = args.gpu_batch * args.gpu_repeats / (time.perf_counter() - t)
        t = time.perf_counter()
        local = evaluate(cfg, explainer=ex)
        rates["local_eval"] = _maps(local) / (time.perf_counter() - t)
        ex_cpu = Explainer(load_model(path).model, loaded.card, batch_size=args.gpu_batch)
        t = time.perf_counter()
        run = evaluate_on_ray(dataclasses.replace(cfg, out=str(tmp / f"gpu-{name}")), ex_cpu)
        rates["ray_eval"] = _maps(run.result) / (time.perf_counter() - t)
        out[name] = {
            "maps_per_s": {k: round(v, 1) for k, v in rates.items()},
            "engine / floor": round(rates["engine"] / rates["floor"], 3),
            "ray actors": f"{run.workers} {run.device}",
        }
        print(name, out[name], flush=True)
    _shutdown(ray)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=1, help="local/Ray pairs (ABAB…)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--gpu-batch", type=int, default=64)
    ap.add_argument("--gpu-repeats", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result: dict = {"command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        result["cpu"] = cpu_part(args, Path(tmp))
        print(json.dumps(result["cpu"], indent=2), flush=True)
        if torch.cuda.is_available():
            result["gpu"] = gpu_part(args, Path(tmp))
        else:
            result["gpu"] = "not run: no CUDA device on this machine"
            print("GPU part not run: no CUDA device on this machine")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
