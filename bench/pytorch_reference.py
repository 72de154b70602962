#!/usr/bin/env python3
"""PyTorch reference speed of the study's CNN regressor (and classifier) on this machine.

The same network as lib/models/mod.ts (NCHW here): Conv2d(1, 32, 3, padding=1) + ReLU, MaxPool 2,
Conv2d(32, 64, 3, padding=1) + ReLU, MaxPool 2, Flatten (26,880), Linear 256 + ReLU,
Linear 128 + ReLU, Linear 1 (classifier: 37). Adam lr 1e-3, batch 64 of random 40x168 images.

    python3 bench/pytorch_reference.py [--threads 2] [--batches 5] [--warmup 2] [--json]

(Debian's python3-torch lives in /usr/bin/python3; a pyenv or venv python3 may not see it.)

The last line is `train_img_s=<x> infer_img_s=<y>` for the regressor, as bench/bench.ts prints.
"""

import argparse
import json
import sys
import time

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("pytorch_reference.py: PyTorch is not installed (Debian: apt-get install python3-torch)")

HEIGHT, WIDTH, NUM_SUMS = 40, 168, 37


def build(outputs: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(64 * (HEIGHT // 4) * (WIDTH // 4), 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, outputs),
    )


def measure(kind: str, batch: int, batches: int, warmup: int) -> dict:
    regression = kind == "cnn-regressor"
    model = build(1 if regression else NUM_SUMS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, HEIGHT, WIDTH)
    y = torch.randint(0, NUM_SUMS, (batch,))
    loss_fn = nn.MSELoss() if regression else nn.CrossEntropyLoss()

    def train_step() -> None:
        optimizer.zero_grad()
        out = model(x)
        loss = loss_fn(out.squeeze(1), y.float()) if regression else loss_fn(out, y)
        loss.backward()
        optimizer.step()

    model.train()
    for _ in range(warmup):
        train_step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        train_step()
    train_s = (time.perf_counter() - wall) / batches
    train_cpu_s = (time.process_time() - cpu) / batches

    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        wall = time.perf_counter()
        for _ in range(batches):
            model(x)
        infer_s = (time.perf_counter() - wall) / batches
    return {
        "backend": "pytorch",
        "threads": torch.get_num_threads(),
        "model": kind,
        "batchSize": batch,
        "batches": batches,
        "trainImagesPerSecond": batch / train_s,
        "trainMsPerBatch": train_s * 1000,
        "trainCpuMsPerBatch": train_cpu_s * 1000,
        "inferImagesPerSecond": batch / infer_s,
        "inferMsPerBatch": infer_s * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", default="cnn-regressor,cnn-classifier")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads < 1 or args.batches < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--threads, --batches and --batch-size must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    for kind in kinds:
        if kind not in ("cnn-regressor", "cnn-classifier"):
            parser.error(f"unknown model '{kind}': expected cnn-regressor or cnn-classifier")
    if "cnn-regressor" not in kinds:
        kinds.insert(0, "cnn-regressor")
    results = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"mkldnn={torch.backends.mkldnn.is_available()}")
    for kind in kinds:
        r = measure(kind, args.batch_size, args.batches, args.warmup)
        results.append(r)
        print(f"pytorch {kind}: train {r['trainImagesPerSecond']:.1f} img/s "
              f"({r['trainMsPerBatch']:.0f} ms/step, cpu {r['trainCpuMsPerBatch']:.0f} ms), "
              f"infer {r['inferImagesPerSecond']:.1f} img/s")
    if args.json:
        print(json.dumps({"versions": {"torch": torch.__version__}, "results": results}))
    first = results[0]
    print(f"train_img_s={first['trainImagesPerSecond']:.1f} "
          f"infer_img_s={first['inferImagesPerSecond']:.1f}")


if __name__ == "__main__":
    main()
