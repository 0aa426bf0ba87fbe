#!/usr/bin/env python3
"""pytorch_mlp — nnbench's training step in PyTorch, for a side-by-side.

Trains the same fully connected network (Linear layers, ReLU hidden, a
softmax output through cross-entropy on the logits, He initialisation) on
synthetic data sized as nnbench sizes it, with the same optimizers, for
warmup + timed steps, and writes a record of nnbench's shape (schema 1,
bench/README.md) with tool "pytorch_mlp" and run.mode. A markdown table goes
to stdout.

Modes: eager (plain PyTorch), graphs (the whole step — forward, loss,
backward, optimizer — captured once in a CUDA graph and replayed), compile
(torch.compile of the forward pass and loss; backward through AOTAutograd,
the optimizer eager).

Exit status: 0 ok, 1 runtime failure, 2 bad usage (the flag is named), no
usable GPU for --device cuda, or torch not installed (wrappers skip on 2).
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import traceback
import tempfile
import time

PROGRAM = "pytorch_mlp"
EXIT_FAILURE, EXIT_USAGE = 1, 2
SCHEMA_VERSION = 1

# nnbench's constants (bench/bench.h, include/nn.h defaults, synthetic_data.c).
LEARNING_RATE = 1e-4
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8
DATA_BUDGET_BYTES = 256 << 20
PRESET_HIDDEN_LAYERS, PRESET_CLASSES = 4, 10
PRESETS = {  # name: (n[0], hidden width, default batch), as bench/nnbench.c
    "small": (784, 256, 256),
    "medium": (1024, 1024, 1024),
    "large": (8192, 8192, 8192),
}
MAX_WIDTHS = 65
INT_MAX = 2**31 - 1
UPLOAD_REPEATS = 20
# Graph capture needs a few eager iterations on a side stream first, so
# that lazily created state (optimizer moments, cuBLAS workspaces) exists.
GRAPH_CAPTURE_WARMUP = 3

# bench/peak.c: datasheet TFLOP/s, dense, boost clock (fp32, tf32, bf16).
PEAK_SOURCE = "NVIDIA datasheets, dense (no sparsity), boost clock"
PEAKS = {
    "H100 SXM5": (67.0, 495.0, 989.0),
    "H100 PCIe": (51.0, 378.0, 756.0),
    "H200 SXM": (67.0, 495.0, 989.0),
    "A100": (19.5, 156.0, 312.0),
}

# Imported by main() once the flags are checked, so that --help and bad
# flags answer at once and without torch.
torch = None


class UsageError(Exception):
    """A bad flag or combination: message, exit 2."""


# --------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------


def whole_number(minimum):
    """An argparse type: a whole number >= minimum, worded as nnbench."""
    def parse(text):
        if not re.fullmatch(r"[0-9]+", text) or int(text) < minimum:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not a whole number >= {minimum}")
        return int(text)
    return parse


def batch_size(text):
    """cuBLAS takes the batch as an int: nnbench's bound, kept here."""
    value = whole_number(1)(text)
    if value > INT_MAX:
        raise argparse.ArgumentTypeError(f"'{text}' is more than {INT_MAX}")
    return value


def seed(text):
    """torch's generators take 64-bit seeds."""
    value = whole_number(0)(text)
    if value >= 2**64:
        raise argparse.ArgumentTypeError(f"'{text}' is more than 2^64 - 1")
    return value


def layer_widths(text):
    """'784,256,256,10' -> [784, 256, 256, 10], with nnbench's bounds."""
    items = text.split(",")
    ok = 2 <= len(items) <= MAX_WIDTHS and all(
        re.fullmatch(r"[0-9]+", item) and 1 <= int(item) <= INT_MAX
        for item in items)
    if not ok or int(items[-1]) < 2:
        raise argparse.ArgumentTypeError(
            f"expected 2 to {MAX_WIDTHS} widths like 784,256,256,10 (each "
            f"1..{INT_MAX}, the output >= 2), got '{text}'")
    return [int(item) for item in items]


def device_name(text):
    """cpu, cuda or cuda:N."""
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not cpu, cuda or cuda:N")
    return text


class Parser(argparse.ArgumentParser):
    """argparse, but errors worded as nnbench's: 'pytorch_mlp: ...', exit 2."""

    def error(self, message):
        print(f"{PROGRAM}: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def make_parser():
    parser = Parser(
        prog=PROGRAM, allow_abbrev=False,
        description="nnbench's training step in PyTorch (bench/README.md).")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--preset", choices=sorted(PRESETS),
                       help="as nnbench [small]")
    model.add_argument("--layers", type=layer_widths,
                       help="widths n[0],...,n[L], e.g. 784,256,256,10")
    parser.add_argument("--batch", type=batch_size,
                        help="batch size [the preset's; 256 with --layers]")
    parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"],
                        default="fp32", help="[fp32]; bf16 = autocast")
    parser.add_argument("--data", choices=["resident", "stream"],
                        default="resident", help="[resident]")
    parser.add_argument("--optimizer", default="adam",
                        choices=["gd", "momentum", "rmsprop", "adam"],
                        help="nn's update rules, lr 1e-4 [adam]")
    parser.add_argument("--warmup", type=whole_number(1), default=10,
                        help="untimed steps first [10]")
    parser.add_argument("--steps", type=whole_number(1), default=50,
                        help="timed steady-state steps [50]")
    parser.add_argument("--seed", type=seed, default=1,
                        help="data, weights and shuffle [1]")
    parser.add_argument("--device", type=device_name,
                        help="cuda[:N] or cpu [cuda if available]")
    parser.add_argument("--mode", choices=["eager", "graphs", "compile"],
                        default="eager",
                        help="graphs: CUDA graph of the whole step [eager]")
    parser.add_argument("--json", metavar="FILE",
                        help="write the record, atomically")
    return parser


def parse_arguments(argv):
    """The flags, with the model resolved: widths, preset name, batch."""
    args = make_parser().parse_args(argv)
    if args.layers:
        args.widths, args.preset_name = args.layers, None
        args.batch = args.batch or 256
    else:
        args.preset_name = args.preset or "small"
        inputs, hidden, batch = PRESETS[args.preset_name]
        args.widths = ([inputs] + [hidden] * PRESET_HIDDEN_LAYERS
                       + [PRESET_CLASSES])
        args.batch = args.batch or batch
    if args.device == "cpu":
        check_cpu_combination(args)
    return args


def check_cpu_combination(args):
    """Modes and precisions that exist only on CUDA: refused by name."""
    if args.mode == "graphs":
        raise UsageError("--mode: graphs needs CUDA (CUDA graphs); use eager "
                         "or compile on the cpu")
    if args.precision == "tf32":
        raise UsageError("--precision: tf32 is a CUDA tensor-core mode; use "
                         "fp32 or bf16 on the cpu")


def import_torch():
    """Binds the module-level name; UsageError (exit 2) if it is missing so
    that wrappers can tell 'not installed' from a failed run."""
    global torch
    try:
        import torch as module
    except ImportError as error:
        raise UsageError(f"torch is not installed ({error})") from None
    torch = module


def check_torch_features(args):
    """UsageError (exit 2) for a mode this torch lacks: torch.compile came
    with PyTorch 2.0 (Debian 12 ships 1.13)."""
    if args.mode == "compile" and not hasattr(torch, "compile"):
        raise UsageError(f"--mode compile: torch {torch.__version__} has no "
                         "torch.compile (PyTorch 2.0 or later); use eager "
                         "or graphs")


def resolve_device(args):
    """torch.device for --device, cuda by default where there is one."""
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device: no usable GPU (torch.cuda."
                             "is_available() is false)")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device: there is no {args.device}")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    else:
        check_cpu_combination(args)
    return device


# --------------------------------------------------------------------------
# Model, optimizer, precision
# --------------------------------------------------------------------------


def build_model(widths, device):
    """Linear layers with ReLU between them (the softmax is in the loss),
    He-initialised as nn does: W ~ N(0, 2 / n[l-1]), b = 0."""
    layers = []
    for l in range(1, len(widths)):
        linear = torch.nn.Linear(widths[l - 1], widths[l], device=device)
        torch.nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        torch.nn.init.zeros_(linear.bias)
        layers.append(linear)
        if l < len(widths) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class CourseMomentum:
    """nn's momentum (the course's): v = β v + (1-β) g; θ -= α v.

    torch.optim.SGD's momentum is v = μ v + (1-dampening) g but sets v = g
    on its first step, so it differs from nn there: written by hand with
    torch._foreach_* ops (one launch per op over all tensors). No step
    counter, so a CUDA graph can capture it as it is."""

    def __init__(self, parameters, learning_rate, beta):
        self.parameters = list(parameters)
        self.velocities = [torch.zeros_like(p) for p in self.parameters]
        self.learning_rate, self.beta = learning_rate, beta

    def zero_grad(self, set_to_none=True):
        for parameter in self.parameters:
            parameter.grad = None

    def step(self):
        with torch.no_grad():
            gradients = [p.grad for p in self.parameters]
            torch._foreach_mul_(self.velocities, self.beta)
            torch._foreach_add_(self.velocities, gradients,
                                alpha=1 - self.beta)
            torch._foreach_add_(self.parameters, self.velocities,
                                alpha=-self.learning_rate)


def make_optimizer(kind, parameters, on_cuda, capturable):
    """nn's update rule for kind, and a description of how it is done.

    gd, rmsprop and adam are torch.optim's (rmsprop with alpha = β2, no
    momentum, uncentred, is nn's s = β2 s + (1-β2) g², θ -= α g/(√s + ε);
    Adam's denominator √s/√c2 + ε is nn's √(s/c2) + ε); on CUDA the
    fastest implementation (fused Adam, foreach others)."""
    parameters = list(parameters)
    fast = {"foreach": True} if on_cuda else {}
    # Passed only when wanted (graphs): torch.optim.RMSprop takes it from
    # PyTorch 2.0 on, and the default is False anyway.
    graph_safe = {"capturable": True} if capturable else {}
    if kind == "gd":
        return (torch.optim.SGD(parameters, lr=LEARNING_RATE, **fast),
                "torch.optim.SGD (θ -= α g)" + (", foreach" if fast else ""))
    if kind == "momentum":
        return (CourseMomentum(parameters, LEARNING_RATE, BETA1),
                "by hand with torch._foreach_* ops: v = β1 v + (1-β1) g, "
                "θ -= α v (torch.optim.SGD sets v = g on its first step)")
    if kind == "rmsprop":
        optimizer = torch.optim.RMSprop(
            parameters, lr=LEARNING_RATE, alpha=BETA2, eps=EPSILON,
            **graph_safe, **fast)
        return optimizer, (f"torch.optim.RMSprop(alpha={BETA2}, "
                           f"eps={EPSILON})" + (", foreach" if fast else ""))
    fused = {"fused": True} if on_cuda else {}
    optimizer = torch.optim.Adam(
        parameters, lr=LEARNING_RATE, betas=(BETA1, BETA2), eps=EPSILON,
        **graph_safe, **fused)
    return optimizer, (f"torch.optim.Adam(betas=({BETA1}, {BETA2}), "
                       f"eps={EPSILON})" + (", fused" if fused else ""))


def set_matmul_precision(precision, on_cuda):
    """fp32: no TF32 anywhere (nn's default cuBLAS math); tf32: TF32 tensor
    cores for fp32 products; bf16: autocast does it (fp32 products where
    autocast keeps fp32)."""
    tf32 = precision == "tf32"
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def autocast_for(precision, device, graphs):
    """A factory of the forward pass's autocast context: bf16 products with
    fp32 master weights, or a disabled one. The autocast weight cache must
    be off inside a CUDA graph capture."""
    def context():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=precision == "bf16",
                              cache_enabled=not graphs)
    return context


def make_step(model, optimizer, autocast, compiled):
    """One training step on a batch (x, integer labels y)."""
    def forward_loss(x, y):
        with autocast():
            return torch.nn.functional.cross_entropy(model(x), y)
    loss_of = torch.compile(forward_loss) if compiled else forward_loss

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss_of(x, y).backward()
        optimizer.step()
    return step


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def batches_per_epoch(args):
    """nnbench's synthetic set: as many batches as fit in 256 MiB of inputs,
    at most warmup + steps, at least 2."""
    batch_bytes = args.widths[0] * 4 * args.batch
    fit = DATA_BUDGET_BYTES // batch_bytes
    return max(2, min(fit, args.warmup + args.steps))


def synthetic_set(args, examples, device, pinned):
    """X uniform in [0, 1) (examples × n[0]) and labels uniform over the
    classes, seeded; generated where they will live."""
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x = torch.rand((examples, args.widths[0]), generator=generator,
                   device=device)
    y = torch.randint(args.widths[-1], (examples,), generator=generator,
                      device=device)
    if pinned:
        x, y = x.pin_memory(), y.pin_memory()
    return x, y


class Shuffler:
    """Batch indices: a new permutation of the set each epoch, on the
    device the gather runs on; knows whether a batch started an epoch."""

    def __init__(self, examples, batch, seed_value, device):
        self.examples, self.batch = examples, batch
        self.per_epoch = examples // batch
        self.generator = torch.Generator(device=device).manual_seed(
            seed_value)
        self.device = device
        self.taken = 0
        self.order = None

    def next_indices(self):
        """(indices of the next batch, whether it starts an epoch)."""
        position = self.taken % self.per_epoch
        if position == 0:
            self.order = torch.randperm(self.examples, device=self.device,
                                        generator=self.generator)
        self.taken += 1
        start = position * self.batch
        return self.order[start:start + self.batch], position == 0


class ResidentSource:
    """The set where the model is; each batch an index gather there (nn's
    resident placement gathers on the device too)."""

    description = "the set on the device; each batch gathered there by " \
                  "shuffled indices (index_select)"

    def __init__(self, x, y, batch, seed_value):
        self.x, self.y = x, y
        self.shuffler = Shuffler(len(x), batch, seed_value, x.device)
        self.epoch_start = False

    def take(self, out=None):
        """The batch to train on, in out (x, y) when given (static graph
        inputs), else in fresh tensors."""
        indices, self.epoch_start = self.shuffler.next_indices()
        if out is None:
            return self.x[indices], self.y[indices]
        torch.index_select(self.x, 0, indices, out=out[0])
        torch.index_select(self.y, 0, indices, out=out[1])
        return out

    def advance(self):
        """Nothing to prepare: the gather is part of take()."""


class StreamingSource:
    """The set in pinned host memory; each batch gathered on the host into
    one of two pinned staging buffers and copied (non_blocking) on a side
    stream into one of two device buffers while the previous batch trains:
    nn's streaming feeder, double-buffered. nn gathers on producer
    threads; here the gather runs right after the step is queued, so it
    overlaps the device's work just the same."""

    description = "the set in pinned host memory; each batch gathered on " \
                  "the host into pinned staging and copied non_blocking on " \
                  "a side stream, double-buffered"

    def __init__(self, x, y, batch, seed_value, device):
        self.x, self.y = x, y
        self.shuffler = Shuffler(len(x), batch, seed_value, "cpu")
        self.staging = [self._buffers(batch, "cpu", True) for _ in range(2)]
        self.device_buffers = [self._buffers(batch, device, False)
                               for _ in range(2)]
        self.copy_stream = torch.cuda.Stream(device)
        self.uploaded = [torch.cuda.Event() for _ in range(2)]
        self.consumed = [torch.cuda.Event() for _ in range(2)]
        self.starts = [False, False]
        self.slot = 0
        self.epoch_start = False
        self._prefetch(0)

    def _buffers(self, batch, device, pinned):
        x = torch.empty((batch, self.x.shape[1]), device=device,
                        pin_memory=pinned)
        y = torch.empty((batch,), dtype=self.y.dtype, device=device,
                        pin_memory=pinned)
        return x, y

    def _prefetch(self, slot):
        """Gathers the next batch into staging[slot] (once its last upload
        has read it) and queues its upload behind the step that last read
        device_buffers[slot]."""
        indices, self.starts[slot] = self.shuffler.next_indices()
        self.uploaded[slot].synchronize()
        staged, target = self.staging[slot], self.device_buffers[slot]
        torch.index_select(self.x, 0, indices, out=staged[0])
        torch.index_select(self.y, 0, indices, out=staged[1])
        with torch.cuda.stream(self.copy_stream):
            self.copy_stream.wait_event(self.consumed[slot])
            target[0].copy_(staged[0], non_blocking=True)
            target[1].copy_(staged[1], non_blocking=True)
            self.uploaded[slot].record(self.copy_stream)

    def take(self, out=None):
        """The uploaded batch, ordered after its copy on the current stream;
        copied into out (static graph inputs) when given."""
        torch.cuda.current_stream().wait_event(self.uploaded[self.slot])
        self.epoch_start = self.starts[self.slot]
        batch = self.device_buffers[self.slot]
        if out is None:
            return batch
        out[0].copy_(batch[0])
        out[1].copy_(batch[1])
        return out

    def advance(self):
        """After the step is queued: its buffers are free once the device
        reaches this point; the next batch goes into the other slot."""
        self.consumed[self.slot].record()
        self.slot ^= 1
        self._prefetch(self.slot)


def make_source(args, device, examples):
    """The data pipeline for --data on this device. On the CPU there is no
    device copy: both placements gather from the set in host memory."""
    streaming = args.data == "stream" and device.type == "cuda"
    home = torch.device("cpu") if streaming else device
    x, y = synthetic_set(args, examples, home, pinned=streaming)
    if streaming:
        return StreamingSource(x, y, args.batch, args.seed, device)
    return ResidentSource(x, y, args.batch, args.seed)


# --------------------------------------------------------------------------
# The timed run
# --------------------------------------------------------------------------


class Trainer:
    """One iteration = take a batch, train on it, let the source prepare
    the next; in graphs mode the step is a replay of the captured one."""

    def __init__(self, step, source):
        self.step, self.source = step, source
        self.static = None

    def iterate(self):
        x, y = self.source.take(out=self.static)
        self.step(x, y)
        self.source.advance()

    def capture(self, batch_shape, device):
        """CUDA graph of the whole step (torch.cuda.graph, whole-network
        capture): eager iterations on a side stream first, then the
        capture; the batch goes into static input buffers each iteration."""
        self.static = (torch.empty(batch_shape, device=device),
                       torch.empty(batch_shape[:1], dtype=torch.long,
                                   device=device))
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(GRAPH_CAPTURE_WARMUP):
                self.iterate()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step(*self.static)
        self.step = lambda x, y: graph.replay()


class StepClock:
    """Step boundaries: CUDA events on the compute stream (no per-step
    synchronization, so the queue stays full as in a real training loop),
    or the host clock on the CPU, whose ops run to completion."""

    def __init__(self, on_cuda):
        self.on_cuda = on_cuda
        self.marks, self.epoch_starts = [], []

    def _now(self):
        if not self.on_cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self):
        self.marks.append(self._now())

    def mark(self, epoch_start):
        self.marks.append(self._now())
        self.epoch_starts.append(epoch_start)

    def step_seconds(self):
        """(steady steps, epoch-start steps), in seconds."""
        if self.on_cuda:
            torch.cuda.synchronize()
            times = [a.elapsed_time(b) / 1e3
                     for a, b in zip(self.marks, self.marks[1:])]
        else:
            times = [b - a for a, b in zip(self.marks, self.marks[1:])]
        steady = [t for t, s in zip(times, self.epoch_starts) if not s]
        starts = [t for t, s in zip(times, self.epoch_starts) if s]
        return steady, starts

    @staticmethod
    def description(on_cuda):
        if on_cuda:
            return ("CUDA events between iterations on the compute stream, "
                    "no per-step synchronization (an iteration: batch "
                    "gather or upload, forward, loss, backward, update)")
        return "host clock between iterations (CPU ops run to completion)"


def time_steps(args, trainer, on_cuda):
    """Warmup, then iterations until args.steps steady ones are timed; the
    first step of an epoch (reshuffle) is kept apart, as nnbench does."""
    for _ in range(args.warmup):
        trainer.iterate()
    clock = StepClock(on_cuda)
    clock.start()
    steady = 0
    while steady < args.steps:
        trainer.iterate()
        clock.mark(trainer.source.epoch_start)
        steady += not trainer.source.epoch_start
    return clock.step_seconds()


def measure_upload(source, repeats=UPLOAD_REPEATS):
    """One batch copied as the streaming source copies it (pinned staging
    to a device buffer on a non-blocking stream): 2 untimed, then repeats
    timed with CUDA events; median seconds. After the run, with the
    pipeline drained, so that nothing else is copying."""
    torch.cuda.synchronize()
    staged, target = source.staging[0], source.device_buffers[0]
    stream = torch.cuda.Stream()
    times = []
    with torch.cuda.stream(stream):
        for i in range(repeats + 2):
            begin = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            begin.record(stream)
            target[0].copy_(staged[0], non_blocking=True)
            target[1].copy_(staged[1], non_blocking=True)
            end.record(stream)
            end.synchronize()
            if i >= 2:
                times.append(begin.elapsed_time(end) / 1e3)
    return statistics.median(times)


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def summarize(seconds):
    """nnbench's stats in ms (median of the middle two for an even count),
    or None for no steps."""
    if not seconds:
        return None
    ms = [1e3 * s for s in seconds]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms),
            "mean": statistics.fmean(ms), "count": len(ms)}


def parameter_count(widths):
    return sum(widths[l] * widths[l - 1] + widths[l]
               for l in range(1, len(widths)))


def step_flops(widths, batch):
    """nnbench's gemm FLOPs: B (6 Σ n[l] n[l-1] − 2 n[1] n[0])."""
    products = sum(widths[l] * widths[l - 1] for l in range(1, len(widths)))
    return batch * (6 * products - 2 * widths[1] * widths[0])


def memory_plan(widths, batch, optimizer):
    """nnbench's model minimum, in bytes of fp32."""
    parameters = 4 * parameter_count(widths)
    state_arenas = {"gd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}
    activations = 4 * batch * (widths[0] + widths[-1] + 2 * sum(widths[1:]))
    plan = {"parameters_bytes": parameters, "gradients_bytes": parameters,
            "optimizer_state_bytes": state_arenas[optimizer] * parameters,
            "activations_bytes": activations}
    return {"minimum_bytes": sum(plan.values()), **plan}


def peak_row(gpu_name):
    """bench/peak.c's match: NVL and GH200 left out rather than guessed."""
    if gpu_name is None or "NVL" in gpu_name or "GH200" in gpu_name:
        return None
    if "H100" in gpu_name:
        return "H100 PCIe" if "PCIe" in gpu_name else "H100 SXM5"
    if "H200" in gpu_name:
        return "H200 SXM"
    return "A100" if "A100" in gpu_name else None


def peak_tflops(gpu_name, precision):
    """(TFLOP/s, the datasheet row) or (None, None)."""
    row = peak_row(gpu_name)
    if row is None:
        return None, None
    return PEAKS[row][["fp32", "tf32", "bf16"].index(precision)], row


def ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------


def commit():
    """git describe of the checkout this script is in, or 'unknown'."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True,
            text=True, timeout=10,
            cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def cpu_model():
    """The 'model name' line of /proc/cpuinfo, as nnbench reads it."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def driver_release():
    """'580.65.06' from /proc/driver/nvidia/version, or None."""
    try:
        with open("/proc/driver/nvidia/version") as file:
            match = re.search(r"Kernel Module\s+(\S+)", file.readline())
    except OSError:
        return None
    return match.group(1) if match else None


def driver_cuda_version():
    """cuDriverGetVersion through libcuda ('12.8'); torch does not say."""
    try:
        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(
                ctypes.byref(version)) != 0:
            return None
    except OSError:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def describe_gpu(device):
    """nnbench's environment.gpu fields that PyTorch can tell; the cuBLAS
    version and clocks it cannot are null."""
    properties = torch.cuda.get_device_properties(device)
    clock = getattr(properties, "clock_rate", None)  # kHz where exposed
    return {
        "name": properties.name,
        "index": device.index,
        "compute_capability": f"{properties.major}.{properties.minor}",
        "multiprocessors": properties.multi_processor_count,
        "memory_bytes": properties.total_memory,
        "driver_release": driver_release(),
        "driver_cuda_version": driver_cuda_version(),
        "runtime_version": torch.version.cuda,
        "cublas_version": None,
        "cudnn_version": torch.backends.cudnn.version(),
        "sm_clock_max_mhz": clock / 1000 if clock else None,
        "memory_clock_max_mhz": None,
    }


def describe_environment(device):
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "blas_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "gpu": describe_gpu(device) if device.type == "cuda" else None,
    }


# --------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------


def build_record(args, device, measured):
    """The record, nnbench's fields plus run.mode and how things were done;
    null where a figure does not apply (no gemm floor here: nnbench's is
    the reference for both tools)."""
    steady, starts = measured["steady"], measured["starts"]
    stats = summarize(steady)
    median = stats["median"] / 1e3
    flops = step_flops(args.widths, args.batch)
    environment = measured["environment"]
    gpu = environment["gpu"]
    peak, peak_device = peak_tflops(gpu and gpu["name"], args.precision)
    achieved = flops / median / 1e12
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": PROGRAM,
        "date": measured["date"],
        "commit": commit(),
        "model": {
            "layers": args.widths, "preset": args.preset_name,
            "hidden_activation": "relu", "output_activation": "softmax",
            "loss": "categorical_cross_entropy",
            "parameters": parameter_count(args.widths),
        },
        "run": run_fields(args, device, measured),
        "timer": StepClock.description(device.type == "cuda"),
        "step_time_ms": stats,
        "epoch_start_step_time_ms": summarize(starts),
        "samples_per_second": args.batch / median,
        "flops_per_step": flops,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "peak_device": peak_device,
        "peak_source": PEAK_SOURCE if peak_device else None,
        "fraction_of_peak": ratio(achieved, peak),
        "gemm_floor": None,
        "host_to_device": transfer_fields(args, measured, median),
        "memory": {**memory_plan(args.widths, args.batch, args.optimizer),
                   "library_layout_bytes": None,
                   "device_used_bytes": measured["device_used"],
                   "device_used_measure": measured["device_used_measure"],
                   "device_total_bytes": gpu and gpu["memory_bytes"]},
        "environment": environment,
    }


def run_fields(args, device, measured):
    name = "cpu" if device.type == "cpu" else \
        f"{device} ({torch.cuda.get_device_name(device)})"
    return {
        "backend": device.type, "device": name, "batch_size": args.batch,
        "precision": args.precision, "data": args.data,
        "optimizer": args.optimizer, "learning_rate": LEARNING_RATE,
        "seed": args.seed, "warmup_steps": args.warmup,
        "timed_steps": args.steps, "examples": measured["examples"],
        "batches_per_epoch": measured["batches_per_epoch"],
        "epoch_start_steps_excluded": len(measured["starts"]),
        "mode": args.mode,
        "mode_detail": MODE_DETAILS[args.mode],
        "optimizer_implementation": measured["optimizer_implementation"],
        "data_pipeline": measured["data_pipeline"],
        "labels": "int64 class indices (nn.CrossEntropyLoss on the logits)",
        "torch_threads": torch.get_num_threads(),
    }


MODE_DETAILS = {
    "eager": "PyTorch eager",
    "graphs": f"the whole step (forward, loss, backward, optimizer step) "
              f"captured in one CUDA graph after {GRAPH_CAPTURE_WARMUP} "
              f"eager iterations, replayed; the batch copied into its "
              f"static inputs",
    "compile": "torch.compile (default mode) of the forward pass and loss; "
               "backward through AOTAutograd; optimizer eager",
}


def transfer_fields(args, measured, median):
    """nnbench's host_to_device, for streaming on CUDA; else None."""
    copy = measured["upload_seconds"]
    if copy is None:
        return None
    bytes_per_step = (args.widths[0] * 4 + 8) * args.batch  # X, int64 labels
    return {"bytes_per_step": bytes_per_step,
            "required_gb_per_s": bytes_per_step / median / 1e9,
            "pinned_copy_ms": 1e3 * copy,
            "pinned_copy_gb_per_s": bytes_per_step / copy / 1e9,
            "copy_fraction_of_step": copy / median}


def write_atomically(path, text):
    """Temporary file beside path, fsync, rename: a reader never sees half a
    record. Mode 0666 less the umask, like any new file."""
    directory = os.path.dirname(path) or "."
    descriptor, temporary = tempfile.mkstemp(
        dir=directory, prefix=os.path.basename(path) + ".tmp.")
    try:
        with os.fdopen(descriptor, "w") as file:
            mask = os.umask(0)
            os.umask(mask)
            os.fchmod(file.fileno(), 0o666 & ~mask)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------


def figure(value, spec, missing="n/a"):
    return missing if value is None else format(value, spec)


def print_table(record):
    """A two-column markdown table like nnbench's."""
    model, run = record["model"], record["run"]
    steps, memory = record["step_time_ms"], record["memory"]
    widths = "-".join(str(n) for n in model["layers"])
    upload = record["host_to_device"]
    rows = [
        ("model", f"{widths}" + (f" (preset {model['preset']})"
                                 if model["preset"] else "")
         + f", relu hidden, softmax output, {model['parameters']} parameters"),
        ("run", f"{run['device']}, batch {run['batch_size']}, "
         f"{run['precision']}, data {run['data']}, {run['optimizer']}, lr "
         f"{run['learning_rate']:g}, {run['warmup_steps']} warmup + "
         f"{run['timed_steps']} timed steps, seed {run['seed']}"),
        ("mode", f"{run['mode']}: {run['mode_detail']}"),
        ("optimizer", run["optimizer_implementation"]),
        ("data", f"synthetic, {run['examples']} examples = "
         f"{run['batches_per_epoch']} batches per epoch; "
         f"{run['epoch_start_steps_excluded']} epoch-start steps left out; "
         f"{run['data_pipeline']}"),
        ("timer", record["timer"]),
        ("step time", f"median {steps['median']:.3f} ms, min "
         f"{steps['min']:.3f} ms, max {steps['max']:.3f} ms (mean "
         f"{steps['mean']:.3f} ms, {steps['count']} steps)"),
        ("samples/s", f"{record['samples_per_second']:.0f}"),
        ("gemm FLOPs per step", f"{record['flops_per_step']} = "
         f"{record['flops_per_step'] / 1e9:.3f} GFLOP"),
        ("achieved", f"{record['achieved_tflops']:.3f} TFLOP/s"),
        (f"peak ({run['precision']})",
         "n/a" if record["peak_tflops"] is None else
         f"{record['peak_tflops']:.1f} TFLOP/s ({record['peak_device']}; "
         f"{record['peak_source']})"),
        ("fraction of peak", figure(record["fraction_of_peak"], ".3f")),
        ("host to device", "n/a" if upload is None else
         f"needs {upload['required_gb_per_s']:.2f} GB/s; a pinned copy of "
         f"one batch takes {upload['pinned_copy_ms']:.3f} ms = "
         f"{upload['pinned_copy_gb_per_s']:.2f} GB/s "
         f"({100 * upload['copy_fraction_of_step']:.1f}% of the step)"),
        ("memory: model minimum",
         f"{memory['minimum_bytes'] / 2**20:.1f} MiB"),
        ("memory: device used", "n/a" if memory["device_used_bytes"] is None
         else f"{memory['device_used_bytes'] / 2**20:.1f} MiB "
         f"({memory['device_used_measure']})"),
        ("torch", record["environment"]["torch_version"]),
        ("commit", record["commit"]),
        ("date", record["date"]),
    ]
    print(f"## pytorch_mlp: {widths}, batch {run['batch_size']}, "
          f"{run['precision']}, {run['optimizer']}, data {run['data']}, "
          f"{run['mode']}, on {run['device']}\n")
    print("| metric | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def measure(args, device):
    """Builds everything, runs the steps; the measurements for the record."""
    on_cuda = device.type == "cuda"
    set_matmul_precision(args.precision, on_cuda)
    date = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    torch.manual_seed(args.seed)
    per_epoch = batches_per_epoch(args)
    source = make_source(args, device, per_epoch * args.batch)
    model = build_model(args.widths, device)
    graphs = args.mode == "graphs"
    optimizer, optimizer_text = make_optimizer(
        args.optimizer, model.parameters(), on_cuda, capturable=graphs)
    step = make_step(model, optimizer, autocast_for(args.precision, device,
                                                    graphs),
                     compiled=args.mode == "compile")
    trainer = Trainer(step, source)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    if graphs:
        trainer.capture((args.batch, args.widths[0]), device)
    steady, starts = time_steps(args, trainer, on_cuda)
    streaming = isinstance(source, StreamingSource)
    return {
        "date": date, "steady": steady, "starts": starts,
        "examples": per_epoch * args.batch, "batches_per_epoch": per_epoch,
        "optimizer_implementation": optimizer_text,
        "data_pipeline": source.description if on_cuda else
        "the set in host memory; each batch gathered by shuffled indices "
        "(no device copy on the cpu)",
        "upload_seconds": measure_upload(source) if streaming else None,
        "device_used": torch.cuda.max_memory_allocated(device)
        if on_cuda else None,
        "device_used_measure": "torch.cuda.max_memory_allocated: peak of "
        "PyTorch's allocator (data set included, CUDA context not)"
        if on_cuda else None,
        "environment": describe_environment(device),
    }


def main(argv):
    try:
        args = parse_arguments(argv)
        import_torch()
        check_torch_features(args)
        device = resolve_device(args)
    except UsageError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        measurement = measure(args, device)
    except Exception as error:  # noqa: BLE001 — any failure of the run
        # The traceback for the record, then a last line that names the
        # failure: CUDA's and torch.compile's own last lines are advice
        # ("Compile with TORCH_USE_CUDA_DSA ..."), which bench/compare
        # would otherwise take for the reason.
        traceback.print_exc()
        first = (str(error).strip().splitlines() or [""])[0]
        print(f"{PROGRAM}: --mode {args.mode} failed: "
              f"{type(error).__name__}: {first}", file=sys.stderr)
        return EXIT_FAILURE
    record = build_record(args, device, measurement)
    print_table(record)
    if args.json:
        try:
            write_atomically(args.json, json.dumps(record, indent=2) + "\n")
        except OSError as error:
            print(f"{PROGRAM}: --json: cannot write {args.json}: "
                  f"{error.strerror}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"\nrecord written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
