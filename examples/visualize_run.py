"""Draws what a trained run looks at, and writes its HTML report.

For a run folder written by `keras-pvc demo` (or `keras_pvc.apps.demo.run_demo`):
captions the first test clips, draws for each its frames, caption,
references, the decoder's attention over frames and the spatial graph's
region weights (`<run>/visuals/<clip_id>.png`), then writes the
self-contained `<run>/report.html` (metrics, loss and reward curves, clips).

    python examples/visualize_run.py

Make a run first if you have none: `keras-pvc demo --quick --out runs/demo`.
"""

import os

from keras_pvc.apps.report import write_report
from keras_pvc.apps.visualize import visualize_run

# === Knobs ===
RUN_DIR = "runs/demo"  # a run folder with model/, data/, metrics.json
NUM_CLIPS = 8  # test clips to draw
SPLIT = "test"  # "test", "val" or "train"
SAMPLER = "greedy"  # "greedy", "beam", ...
OUT_DIR = None  # where the PNGs go; None: RUN_DIR/visuals

if __name__ == "__main__":
    if not os.path.isdir(os.path.join(RUN_DIR, "model")):
        raise SystemExit(
            f"{RUN_DIR!r} is not a run folder (no model/); run "
            f"`keras-pvc demo --quick --out {RUN_DIR}` first or set RUN_DIR."
        )
    index = visualize_run(
        RUN_DIR, num_clips=NUM_CLIPS, out_dir=OUT_DIR, split=SPLIT, sampler=SAMPLER
    )
    for entry in index:
        print(f"{entry['clip_id']}: {entry['caption']!r}  (ref: {entry['references'][0]!r})")
    visuals = OUT_DIR or os.path.join(RUN_DIR, "visuals")
    print(f"{len(index)} clip figures in {visuals}")
    # The report reuses the figures just drawn (visuals/index.json).
    print("Report:", write_report(RUN_DIR, num_clips=NUM_CLIPS))
