"""Per-relation scene accuracy of a procedural run's held-out captions.

`keras-pvc demo` writes `scene_accuracy.json` (overall shares); this splits
them by the scene's relation (canonical: right-of counts as left-of, below as
above), which is where the README's "neither model sees motion" comes from.

    python examples/scene_breakdown.py runs/g_0 [runs/g_0/data]
"""

import collections
import json
import os
import sys

from keras_pvc.datasets.procedural import Scene
from keras_pvc.datasets.procedural import parse_caption
from keras_pvc.datasets.procedural import scene_meaning


def breakdown(run_dir, data_root):
    with open(os.path.join(data_root, "metadata.json"), encoding="utf-8") as handle:
        scenes = json.load(handle)["scenes"]
    with open(os.path.join(run_dir, "predictions.json"), encoding="utf-8") as handle:
        predictions = json.load(handle)
    table = collections.defaultdict(collections.Counter)
    for clip_id, caption in predictions.items():
        truth = scene_meaning(Scene.from_dict(scenes[clip_id]))
        meanings = parse_caption(caption) or set()
        row = table[truth[0]]
        row["clips"] += 1
        row["shapes"] += any(
            {m[1], m[2]} - {None} == {truth[1], truth[2]} - {None} for m in meanings
        )
        row["relation"] += any(m[0] == truth[0] for m in meanings)
        row["exact"] += truth in meanings
        for said in {m[0] for m in meanings} - {truth[0]}:
            row["said " + said] += 1
    return table


if __name__ == "__main__":
    run_dir = sys.argv[1]
    data_root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(run_dir, "data")
    for relation, row in sorted(breakdown(run_dir, data_root).items()):
        said = ", ".join(f"{k[5:]} {v}" for k, v in sorted(row.items()) if k.startswith("said "))
        print(
            f"{relation:12s} {row['clips']:3d} clips: right kind {row['relation']:3d}, "
            f"right shapes {row['shapes']:3d}, exact {row['exact']:3d}"
            + (f"; said instead: {said}" if said else "")
        )
