#!/usr/bin/env python3
"""The study's CNNs trained in PyTorch on digitsum's data: a cross-check of the TypeScript port.

Same data files, same split (NumPy's legacy global RNG: np.random.seed(seed), then a shuffle of
0..29999), same layers and PyTorch default initialisation, Adam 1e-3, MSE or cross entropy, batches
of 64 in order, 15 epochs; it prints the study's lines and writes a run record in digitsum's
format (`digitsum-run/1`, backend `pytorch`) to OUT/<model>_<seed>/result.json, with the data's
fingerprint computed the way digitsum computes it, so `deno task sweep` tables and this record
can be compared line for line.

    python tools/pytorch_study.py --model cnn-regressor --seed 42 [--epochs 15]
        [--data-dir data] [--out results/pytorch] [--threads 2]

Resumable: after each epoch the run's state goes to OUT/<model>_<seed>/state/state.pt (not
committed); the same command continues from there, and the state is removed once the record is
written.

Needs torch and numpy (e.g. a venv with `pip install torch==2.13.0+cpu numpy`).
"""

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch
from torch import nn

HEIGHT, WIDTH, NUM_SUMS = 40, 168, 37
COURSE_IMAGES = ["data0.npy", "data1.npy", "data2.npy"]
COURSE_LABELS = ["lab0.npy", "lab1.npy", "lab2.npy"]
TEST_FILES = ["test_data.npy", "test_lab.npy"]
TITLES = {"cnn-regressor": ("CNN Regressor", "Regressor"), "cnn-classifier": ("CNN Classifier", "Classifer")}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build(kind: str) -> nn.Module:
    outputs = 1 if kind == "cnn-regressor" else NUM_SUMS
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),  # [b, 32, 20, 84]
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2),  # [b, 64, 10, 42]
        nn.Flatten(),  # [b, 26880]
        nn.Linear(64 * (HEIGHT // 4) * (WIDTH // 4), 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, outputs),  # [b, 1] or [b, 37]
    )


def fingerprint(data_dir: str) -> dict:
    """digitsum's DataFingerprint: sha256 per file, id = sha256 of sorted 'name:sha256\\n' lines."""
    files = {}
    for name in COURSE_IMAGES + COURSE_LABELS + TEST_FILES:
        with open(os.path.join(data_dir, name), "rb") as f:
            files[name] = hashlib.sha256(f.read()).hexdigest()
    lines = "".join(f"{name}:{files[name]}\n" for name in sorted(files))
    record = {"id": hashlib.sha256(lines.encode()).hexdigest(), "files": files}
    manifest_path = os.path.join(data_dir, "MANIFEST.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        entries = manifest.get("files", {})
        if all(entries.get(n, {}).get("sha256") == files[n] for n in COURSE_IMAGES + COURSE_LABELS):
            seed = entries[COURSE_IMAGES[0]].get("seed")
            return {"source": "generated", "generator": manifest.get("generator"), "seed": seed, **record}
    return {"source": "course", **record}


def load(data_dir: str, seed: int, train_fraction: float):
    images = np.concatenate([np.load(os.path.join(data_dir, n)) for n in COURSE_IMAGES])
    labels = np.concatenate([np.load(os.path.join(data_dir, n)) for n in COURSE_LABELS])
    np.random.seed(seed)
    order = np.arange(len(images))
    np.random.shuffle(order)
    images, labels = images[order], labels[order]
    cut = int(len(images) * train_fraction)
    test_images = np.load(os.path.join(data_dir, TEST_FILES[0]))
    test_labels = np.load(os.path.join(data_dir, TEST_FILES[1]))
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:]), (test_images, test_labels)


def batches(split, batch_size: int):
    images, labels = split
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size].astype(np.float32) / 255.0)
        y = torch.from_numpy(labels[start:start + batch_size].astype(np.float32))
        yield x.unsqueeze(1), y  # [b, 1, 40, 168], [b]


def predict(model: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return torch.round(out.squeeze(1)) if kind == "cnn-regressor" else out.argmax(1).float()


def evaluate(model: nn.Module, kind: str, split, batch_size: int):
    """(correct, total, mean over batches of each batch's % correct)."""
    model.eval()
    correct, total, batch_means = 0, 0, []
    with torch.no_grad():
        for x, y in batches(split, batch_size):
            hits = int((predict(model, kind, x) == y).sum())
            correct += hits
            total += len(y)
            batch_means.append(100.0 * hits / len(y))
    return correct, total, float(np.mean(batch_means))


def save_state(path: str, state: dict) -> None:
    """Writes the resumable state of a run after an epoch (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(TITLES), required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-fraction", type=float, default=0.8)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", default="results/pytorch")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, help="training images (validation and test get a "
                        "quarter as many): a smoke test, not the study")
    args = parser.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0:
        parser.error("--epochs and --batch-size must be >= 1 and --lr > 0")
    torch.set_num_threads(args.threads)
    kind, title, noun = args.model, *TITLES[args.model]
    started = time.perf_counter()

    seed_everything(args.seed)
    train, val, test = load(args.data_dir, args.seed, args.train_fraction)
    if args.limit:
        cut = lambda split, n: (split[0][:n], split[1][:n])  # noqa: E731
        train, val, test = cut(train, args.limit), cut(val, args.limit // 4), cut(test, args.limit // 4)
    model = build(kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss() if kind == "cnn-regressor" else nn.CrossEntropyLoss()
    history = []
    out_dir = os.path.join(args.out, f"{kind}_{args.seed}")
    state_path = os.path.join(out_dir, "state", "state.pt")
    setup = {"model": kind, "seed": args.seed, "epochs": args.epochs, "batchSize": args.batch_size,
             "learningRate": args.lr, "trainFraction": args.train_fraction, "limit": args.limit,
             "data": fingerprint(args.data_dir)["id"]}
    if os.path.exists(state_path):
        state = torch.load(state_path, weights_only=False)
        if state["setup"] != setup:
            parser.error(f"{state_path} holds another run ({state['setup']}); delete it to start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        history = state["history"]
        started -= state["seconds"]
        print(f"Resuming {title} seed {args.seed} after epoch {len(history)}/{args.epochs}", flush=True)
    for epoch in range(len(history) + 1, args.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        losses = []
        for x, y in batches(train, args.batch_size):
            optimizer.zero_grad()
            out = model(x)
            loss = loss_fn(out.squeeze(1), y) if kind == "cnn-regressor" else loss_fn(out, y.long())
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        train_seconds = time.perf_counter() - epoch_start
        _, _, val_accuracy = evaluate(model, kind, val, args.batch_size)
        train_loss = float(np.mean(losses))
        print(f"Epoch {epoch}/{args.epochs}, Train Loss: {train_loss:.4f}, Val Accuracy: {val_accuracy:.4f}",
              flush=True)
        history.append({
            "epoch": epoch,
            "trainLoss": train_loss,
            "valAccuracy": val_accuracy,
            "seconds": time.perf_counter() - epoch_start,
            "trainImagesPerSecond": len(train[0]) / train_seconds,
        })
        save_state(state_path, {
            "setup": setup, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(), "history": history,
            "seconds": time.perf_counter() - started,
        })

    accuracy = {}
    for name, split, label in (("val", val, "Validation"), ("train", train, "Training"),
                               ("test", test, "Held-out Test")):
        correct, total, _ = evaluate(model, kind, split, args.batch_size)
        accuracy[name] = {"correct": correct, "total": total, "accuracy": 100.0 * correct / total}
        print(f"Overall Accuracy of {noun} on {label} Split: {100.0 * correct / total:.2f}%", flush=True)

    versions = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
    record = {
        "format": "digitsum-run/1",
        "status": "done",
        "key": f"{kind}_{args.seed}",
        "model": kind,
        "title": title,
        "seed": args.seed,
        "config": {
            "model": kind, "seed": args.seed, "epochs": args.epochs, "batchSize": args.batch_size,
            "learningRate": args.lr, "trainFraction": args.train_fraction,
            "backend": "pytorch", "dataDir": args.data_dir,
            **({"limit": args.limit} if args.limit else {}),
        },
        "accuracy": accuracy,
        "history": history,
        "params": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - started,
        "backend": {"name": "pytorch", "threads": torch.get_num_threads(), "versions": versions},
        "versions": versions,
        "data": fingerprint(args.data_dir),
        "finishedAt": datetime.now(timezone.utc).isoformat(),
    }
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "result.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, path)
    if os.path.exists(state_path):
        os.remove(state_path)  # finished: the record is what stays
        os.rmdir(os.path.dirname(state_path))
    print(f"wrote {path} ({record['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
