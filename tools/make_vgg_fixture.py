#!/usr/bin/env python3
"""Write tests/fixtures/vgg/expected.safetensors: PyTorch reference outputs for tests/vgg_test.ts.

Run once with Debian's python3-torch (`/usr/bin/python3 tools/make_vgg_fixture.py`); needs torch
and numpy only (no torchvision, no safetensors package). Weights and inputs come from closed-form
formulas that tests/vgg_test.ts evaluates identically in float64 and rounds to float32, so only
the expected outputs are committed (about 120 KB), never the 35 MB of weights.

Formulas (k = row-major flat index in PyTorch layout, float64, then rounded to float32):
  conv weight features.L  [O, I, 3, 3]: sin(0.7 k + (0.3 L + 0.1)) * (0.7 / sqrt(9 I))
  conv bias   features.L  [O]:          0.05 sin(1.3 k + L)
  1x1 adapter [3, 1, 1, 1]:             [0.8, -0.5, 0.3]
  image       [N, 1, H, W]:             0.5 + 0.5 sin(0.05 k + 0.9 n)   (n = image index)
  pool input  [1, C, h, w]:             sin(0.9 k + 0.2)
"""

import json
import math
import pathlib
import struct

import numpy as np
import torch
import torch.nn as nn

VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
POOL_SIZES = [(1, 5), (7, 7), (3, 10), (10, 3), (2, 2), (13, 17), (1, 1)]
POOL_CHANNELS = 3
IMAGE_SHAPE = (2, 1, 40, 168)
OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "vgg" / "expected.safetensors"


def conv_weight(index, shape):
    k = np.arange(np.prod(shape), dtype=np.float64)
    scale = 0.7 / math.sqrt(9 * shape[1])
    return (np.sin(0.7 * k + (0.3 * index + 0.1)) * scale).astype(np.float32).reshape(shape)


def conv_bias(index, n):
    k = np.arange(n, dtype=np.float64)
    return (0.05 * np.sin(1.3 * k + index)).astype(np.float32)


def image(shape):
    n, c, h, w = shape
    k = np.arange(n * c * h * w, dtype=np.float64).reshape(shape)
    offset = 0.9 * np.arange(n, dtype=np.float64).reshape(n, 1, 1, 1)
    return (0.5 + 0.5 * np.sin(0.05 * k + offset)).astype(np.float32)


def pool_input(shape):
    k = np.arange(np.prod(shape), dtype=np.float64)
    return np.sin(0.9 * k + 0.2).astype(np.float32).reshape(shape)


def build_features():
    layers, channels = [], 3
    for item in VGG11:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    features = nn.Sequential(*layers)
    with torch.no_grad():
        for index, module in enumerate(features):
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(torch.from_numpy(conv_weight(index, tuple(module.weight.shape))))
                module.bias.copy_(torch.from_numpy(conv_bias(index, module.bias.shape[0])))
    return features


def encode(tensors):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + b"".join(blobs)


def main():
    torch.set_num_threads(1)
    features = build_features().eval()
    adapter = nn.Conv2d(1, 3, kernel_size=1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(torch.tensor([0.8, -0.5, 0.3]).reshape(3, 1, 1, 1))
    avgpool = nn.AdaptiveAvgPool2d((7, 7))
    out = {}
    with torch.no_grad():
        x = torch.from_numpy(image(IMAGE_SHAPE))
        feats = features(adapter(x))  # [2, 512, 1, 5]
        flat = torch.flatten(avgpool(feats), 1)  # [2, 25088]
        out["features"] = feats.numpy()
        out["flat0"] = flat[:1].numpy()
        for h, w in POOL_SIZES:
            p = torch.from_numpy(pool_input((1, POOL_CHANNELS, h, w)))
            out[f"pool_{h}x{w}"] = avgpool(p).numpy()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(encode(out))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); features mean {feats.mean():.4f} "
          f"max {feats.max():.4f} zero fraction {(feats == 0).float().mean():.3f}")


if __name__ == "__main__":
    main()
