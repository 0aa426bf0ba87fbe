#!/usr/bin/env python3
"""One markdown row per nnbench record.

Usage: summarize.py RECORDS.json [...]
Each file holds one record (nnbench --json) or a list of them (bench/run-gpu).
Standard library only.
"""
import json
import sys


def figure(value, format_spec):
    return "n/a" if value is None else format(value, format_spec)


def mib(value):
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"


def row(record):
    model, run = record["model"], record["run"]
    name = model["preset"] or "-".join(str(width) for width in model["layers"])
    steps = record["step_time_ms"]
    floor = record["gemm_floor"] or {}
    upload = record["host_to_device"]
    memory = record["memory"]
    fraction = record["fraction_of_peak"]
    upload_text = "n/a" if upload is None else (
        f"{upload['pinned_copy_gb_per_s']:.1f} GB/s, "
        f"{100 * upload['copy_fraction_of_step']:.1f}% of step")
    used = memory["device_used_bytes"]
    used_text = "n/a" if used is None else (
        f"{mib(used)} ({used / memory['minimum_bytes']:.2f}× min)")
    return [
        name, str(run["batch_size"]), run["precision"], run["data"],
        f"{run.get('fusion', 'n/a')} ({run.get('fused_layers', 'n/a')} fused)",
        run["optimizer"],
        f"{steps['median']:.3f} ({steps['min']:.3f}–{steps['max']:.3f})",
        f"{record['samples_per_second']:.0f}",
        f"{record['achieved_tflops']:.2f}",
        "n/a" if fraction is None else f"{100 * fraction:.1f}%",
        figure(floor.get("median_ms"), ".3f"),
        figure(floor.get("step_over_floor"), ".2f"),
        upload_text, mib(memory["minimum_bytes"]), used_text,
    ]


HEADER = ["model", "batch", "precision", "data", "fusion", "optimizer",
          "step ms median (min–max)", "samples/s", "TFLOP/s", "of peak",
          "gemm floor ms", "step / floor", "host→device copy",
          "model minimum", "device used"]


def main(paths):
    records = []
    for path in paths:
        with open(path) as file:
            loaded = json.load(file)
        records.extend(loaded if isinstance(loaded, list) else [loaded])
    print("| " + " | ".join(HEADER) + " |")
    print("|" + " --- |" * len(HEADER))
    for record in records:
        print("| " + " | ".join(row(record)) + " |")
    # What the library noted during a run: a fast path it gave up, and why.
    notes = [(row(record)[0], record["run"].get("notice"))
             for record in records if record["run"].get("notice")]
    if notes:
        print()
        for name, notice in notes:
            print(f"- note ({name}): {notice}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
