#!/usr/bin/env python3
"""A checkpoint written by nntrain loads in Python's safetensors and gives the
predictions nnpredict gives; a file written by Python loads into nntrain.

Uses PyTorch (safetensors.torch + nn.Linear) when it is installed, else numpy
(safetensors.numpy) with the same forward pass written out. Skips, saying so,
when neither safetensors nor numpy can be imported.

Usage: python_interop.py BIN_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors.numpy import load_file, save_file
except ImportError as missing:
    print(f"SKIP: python_interop needs numpy and safetensors ({missing})")
    sys.exit(0)

try:
    import torch
    from safetensors.torch import load_file as torch_load_file
except ImportError:
    torch = None


def activation(name, z):
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if name == "linear":
        return z
    raise ValueError(name)


def numpy_forward(tensors, architecture, x):
    """x is (m, n_x), sample-major, as PyTorch takes it."""
    a = x.astype(np.float64)
    for l, layer in enumerate(architecture["layers"]):
        w = tensors[f"layers.{l}.weight"].astype(np.float64)  # [n_out, n_in]
        b = tensors[f"layers.{l}.bias"].astype(np.float64)
        a = activation(layer["activation"], a @ w.T + b)
    return a


def torch_forward(path, architecture, x):
    state = torch_load_file(path)
    a = torch.from_numpy(x)
    for l, layer in enumerate(architecture["layers"]):
        linear = torch.nn.Linear(*reversed(state[f"layers.{l}.weight"].shape))
        linear.load_state_dict({"weight": state[f"layers.{l}.weight"],
                                "bias": state[f"layers.{l}.bias"]})
        z = linear(a)
        name = layer["activation"]
        a = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
             "linear": lambda t: t,
             "softmax": lambda t: torch.softmax(t, dim=1)}[name](z)
    return a.detach().numpy()


def read_architecture(path):
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(length))
    return json.loads(header["__metadata__"]["architecture"])


def main(bin_dir):
    work = tempfile.mkdtemp()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64) + (x[:, 3] > 1)
    np.save(f"{work}/x.npy", x)
    np.save(f"{work}/y.npy", labels)
    model = f"{work}/model.safetensors"
    subprocess.run([f"{bin_dir}/nntrain", "--train-x", f"{work}/x.npy",
                    "--train-y", f"{work}/y.npy", "--hidden", "16,8",
                    "--activation", "tanh", "--epochs", "20", "--batch", "32",
                    "--lr", "0.01", "--device", "cpu", "--save", model],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([f"{bin_dir}/nnpredict", "--model", model, "--x",
                    f"{work}/x.npy", "--proba", "--out", f"{work}/p.npy",
                    "--device", "cpu"], check=True, stderr=subprocess.DEVNULL)
    ours = np.load(f"{work}/p.npy")
    architecture = read_architecture(model)
    tensors = load_file(model)
    assert tensors["layers.0.weight"].shape == (16, 5), tensors["layers.0.weight"].shape
    theirs = numpy_forward(tensors, architecture, x)
    worst = np.abs(ours - theirs).max()
    assert worst < 1e-5, f"numpy forward differs from nnpredict by {worst}"
    if torch is not None:
        worst = np.abs(ours - torch_forward(model, architecture, x)).max()
        assert worst < 1e-5, f"PyTorch forward differs from nnpredict by {worst}"

    # Python writes, nntrain --init reads: same weights back out.
    written = {k: (v * 0.5).astype(np.float32) for k, v in tensors.items()
               if k.startswith("layers.")}
    save_file(written, f"{work}/python.safetensors")
    subprocess.run([f"{bin_dir}/nntrain", "--train-x", f"{work}/x.npy",
                    "--train-y", f"{work}/y.npy", "--hidden", "16,8",
                    "--activation", "tanh", "--iterations", "1", "--lr", "1e-12",
                    "--init", f"{work}/python.safetensors", "--device", "cpu",
                    "--save", f"{work}/again.safetensors"],
                   check=True, stdout=subprocess.DEVNULL)
    again = load_file(f"{work}/again.safetensors")
    for name, value in written.items():
        assert np.allclose(again[name], value, atol=1e-6), name
    print(f"python interop passed ({'PyTorch and numpy' if torch else 'numpy'})")


if __name__ == "__main__":
    main(sys.argv[1])
