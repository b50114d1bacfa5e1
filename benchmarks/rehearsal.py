"""The rehearsal of every paper preset (`attnrepro reproduce --rehearse`), timed, as a record: each run's result
and minutes, the whole rehearsal's minutes, the machine and the commit. On a GPU machine `--probe-steps N` adds each
full-size preset's measured seconds per step and the device-hours that projects.

    python benchmarks/rehearsal.py                          # every paper preset, 2 processes each
    python benchmarks/rehearsal.py --preset paper_big --probe-steps 10 --devices 1 --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from harness import quiet_known_noise, tables
from harness.benchmark import provenance
from harness.rehearse import paper_presets, rehearse
from reproductions.common.errors import AttnreproError
from reproductions.common.io import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", help="a paper preset (repeatable; default: every one)")
    parser.add_argument("--devices", type=int, default=2, help="processes (GPUs) per run (default: 2)")
    parser.add_argument("--probe-steps", type=int, help="full-size steps to time per run (default: 10 on a GPU)")
    parser.add_argument("--runs", type=Path, default=Path("runs/rehearsal"), help="where the rehearsal's runs go")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rehearsal"), help="the record's folder")
    args = parser.parse_args(argv)
    quiet_known_noise()
    presets = args.preset or paper_presets()
    load_before, started = os.getloadavg(), time.monotonic()
    failure = None
    try:
        items = rehearse(presets, out=args.runs, devices=args.devices, probe_steps=args.probe_steps,
                         console=tables.console())
    except AttnreproError as err:
        failure = str(err)
        items = None
    runs = json.loads((args.runs / "rehearsal.json").read_text())["runs"] if items is None else [
        dataclasses.asdict(i) for i in items]
    minutes = round((time.monotonic() - started) / 60, 1)
    atomic_write_json(args.out / "result.json", {
        "benchmark": "rehearsal", "presets": presets, "devices": args.devices, "probe_steps": args.probe_steps,
        **provenance(load_before), "minutes": minutes, "failure": failure,
        "summary": {"runs": len(runs), "ok": sum(r["status"] == "ok" for r in runs),
                    "skipped": sum(r["status"] == "skipped" for r in runs),
                    "failed": sum(r["status"] == "failed" for r in runs)},
        "rehearsals": runs})
    print(f"rehearsal: {minutes} min in all; record: {args.out / 'result.json'}")
    return 1 if failure else 0


if __name__ == "__main__":
    raise SystemExit(main())
