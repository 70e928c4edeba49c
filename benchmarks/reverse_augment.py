"""Time-reversed copies of a held-out set's training clips (an experiment).

Why: see `keras_pvc.datasets.reverse`, which now makes the same twins inside
the data pipeline (`train --set reversed_twins=true`).

This writes, beside a data folder made by `heldout_eval.py` and its cached
features, a copy in which every training clip also has a reversed twin
(`<id>rev`): its features in reverse frame order (exact for cached
per-frame features), its references those that
`keras_pvc.datasets.reverse.reverse_caption` could turn round, its video a
hard link to the original (only the features are trained on). A clip none
of whose references has a motion word to swap (a still scene, or words the
table lacks) gets no twin. Test clips are left as they are. Then train on
the copy with `heldout_overrides.py --work OUT`. Never asserts.

    python benchmarks/reverse_augment.py --data W/sprites_250_40_s0 \\
        --features W/features_sprites_250_40_s0_regions --out W2
"""

import argparse
import csv
import json
import os
import shutil

import numpy as np

from keras_pvc.datasets.reverse import reverse_caption


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--out", required=True, help="work folder for heldout_overrides.py")
    args = parser.parse_args()
    data_out = os.path.join(args.out, os.path.basename(args.data.rstrip("/")))
    features_out = os.path.join(args.out, os.path.basename(args.features.rstrip("/")))
    os.makedirs(os.path.join(data_out, "YouTubeClips"), exist_ok=True)
    os.makedirs(features_out, exist_ok=True)
    with open(os.path.join(args.data, "split.tsv")) as handle:
        splits = dict(line.rstrip("\n").split("\t") for line in handle if line.strip())
    with open(os.path.join(args.data, "video_corpus.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    new_rows, new_splits, counts = list(rows), dict(splits), {"clips": 0, "swapped": 0, "kept": 0}
    by_clip = {}
    for row in rows:
        by_clip.setdefault(f"{row['VideoID']}_{row['Start']}_{row['End']}", []).append(row)
    for clip_id, clip_rows in by_clip.items():
        if splits.get(clip_id) != "train":
            continue
        video_id = clip_rows[0]["VideoID"] + "rev"
        twin = f"{video_id}_{clip_rows[0]['Start']}_{clip_rows[0]['End']}"
        reversed_refs = [reverse_caption(row["Description"]) for row in clip_rows]
        counts["clips"] += 1
        if not any(reversed_refs):
            counts["kept"] += 1
            continue
        counts["swapped"] += 1
        counts["references_dropped"] = counts.get("references_dropped", 0) + reversed_refs.count(None)
        for row, text in zip(clip_rows, reversed_refs):
            if text is not None:
                new_rows.append({**row, "VideoID": video_id, "Description": text})
        new_splits[twin] = "train"
        features = np.load(os.path.join(args.features, clip_id + ".npy"), allow_pickle=False)
        mask = np.load(os.path.join(args.features, clip_id + ".mask.npy"), allow_pickle=False)
        valid = int(mask.sum())
        flipped = features.copy()
        flipped[:valid] = features[:valid][::-1]
        np.save(os.path.join(features_out, twin + ".npy"), flipped)
        np.save(os.path.join(features_out, twin + ".mask.npy"), mask)
        video = os.path.join(os.path.abspath(args.data), "YouTubeClips", clip_id + ".avi")
        link = os.path.join(data_out, "YouTubeClips", twin + ".avi")
        if not os.path.lexists(link):
            os.link(video, link)
    for name in os.listdir(os.path.join(args.data, "YouTubeClips")):
        link = os.path.join(data_out, "YouTubeClips", name)
        if not os.path.lexists(link):
            os.link(os.path.join(args.data, "YouTubeClips", name), link)
    for name in os.listdir(args.features):
        target = os.path.join(features_out, name)
        if name != "manifest.json" and not os.path.lexists(target):
            os.link(os.path.join(args.features, name), target)
    with open(os.path.join(args.features, "manifest.json")) as handle:
        manifest = json.load(handle)
    with open(os.path.join(features_out, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=1)
    shutil.copy(os.path.join(args.data, "metadata.json"), os.path.join(data_out, "metadata.json"))
    with open(os.path.join(data_out, "video_corpus.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(new_rows)
    with open(os.path.join(data_out, "split.tsv"), "w") as handle:
        handle.writelines(f"{clip_id}\t{split}\n" for clip_id, split in new_splits.items())
    print(f"{counts['clips']} training clips: {counts['swapped']} got a reversed twin, "
          f"{counts['kept']} none (no motion word to swap); "
          f"{counts.get('references_dropped', 0)} references left out of twins; "
          f"wrote {data_out}, {features_out}")


if __name__ == "__main__":
    main()
