"""One self-contained HTML page for a run folder.

`write_report(run_dir)` gathers what a run folder holds (`keras-pvc demo`'s
layout: `metrics.json`, `history.csv`, `loss_imgs/`, `model/`, `data/`) into
`run_dir/report.html`: the metrics (x100, as papers print them), the loss
curves, the reward curve of self-critical training, and a grid of test clips
with their frames, generated caption and references (the PNGs of
`keras_pvc.apps.visualize.visualize_run`, drawn if missing). Every image is
embedded as a base64 data URI and there is no external CSS or JavaScript, so
the page opens offline, mailed or copied alone.

Example:
```python
from keras_pvc.apps.report import write_report
write_report("runs/demo")  # -> "runs/demo/report.html"
```
"""

import base64
import html
import io
import json
import os

METRIC_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
# Run facts from `metrics.json` shown in the header table, in this order.
RUN_KEYS = (
    "preset", "graph", "quick", "seed", "epochs", "num_clips", "parameters",
    "seconds", "train_seconds",
)
# Columns of `history.csv` drawn on the reward plot when present.
REWARD_KEYS = ("reward", "baseline", "greedy_reward", "advantage")
# The page's accent colour (the header bar); tests look for it on screen.
HEADER_COLOR = "#1f4e79"

_STYLE = f"""
body {{ font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 0;
       color: #222; background: #f6f6f6; }}
header {{ background: {HEADER_COLOR}; color: white; padding: 18px 28px; }}
header h1 {{ margin: 0; font-size: 26px; }}
header p {{ margin: 4px 0 0; opacity: 0.85; }}
main {{ padding: 8px 28px 28px; }}
section {{ background: white; border-radius: 6px; padding: 12px 18px;
          margin: 16px 0; box-shadow: 0 1px 3px rgba(0,0,0,0.15); }}
h2 {{ margin: 4px 0 10px; font-size: 20px; color: {HEADER_COLOR}; }}
table {{ border-collapse: collapse; font-size: 15px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
thead th {{ background: #e8eef5; }}
.note {{ color: #666; font-size: 13px; }}
.plots img {{ max-width: 48%; margin-right: 1%; vertical-align: top; }}
.clips {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
         gap: 16px; }}
.clip {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px; }}
.clip img {{ width: 100%; }}
.clip .id {{ color: #666; font-size: 13px; }}
.clip .caption {{ font-weight: bold; font-size: 17px; margin: 4px 0; }}
.clip ul {{ margin: 4px 0; padding-left: 20px; font-size: 14px; }}
"""


def _data_uri(png_bytes):
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def _image_tag(png_bytes, alt):
    return f'<img src="{_data_uri(png_bytes)}" alt="{html.escape(alt)}">'


def _read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def _plot_columns(history, keys, title):
    """PNG bytes of `history` columns against epochs (None if none exist)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [key for key in keys if key in history]
    if not keys or not history.get("epoch"):
        return None
    epochs = [int(epoch) + 1 for epoch in history["epoch"]]
    figure, axis = plt.subplots(figsize=(6, 4))
    for key in keys:
        axis.plot(epochs[: len(history[key])], history[key], marker="o", label=key)
    axis.set_xlabel("epoch")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _metrics_section(summary):
    results = summary.get("metrics") or {}
    if not results:
        return "<p class='note'>No metrics.json in this run folder.</p>"
    rows = []
    notes = []
    for subset, scores in results.items():
        if not isinstance(scores, dict):
            continue
        cells = "".join(
            f"<td>{100 * scores[key]:.1f}</td>"
            if isinstance(scores.get(key), (int, float))
            else "<td>-</td>"
            for key in METRIC_KEYS
        )
        rows.append(f"<tr><td>{html.escape(str(subset))}</td>{cells}</tr>")
        info = scores.get("info")
        if isinstance(info, dict) and info:
            details = ", ".join(f"{key}: {value}" for key, value in info.items())
            notes.append(f"{subset}: {details}")
    # nltk's METEOR (no Java) is another metric than METEOR 1.5: say which.
    from keras_pvc.metrics.meteor import meteor_label

    backends = {
        s.get("meteor_backend") for s in results.values() if isinstance(s, dict)
    } - {None}
    names = {key: key for key in METRIC_KEYS}
    if len(backends) == 1:
        names["METEOR"] = meteor_label(backends.pop())
    header = "".join(f"<th>{html.escape(names[key])}</th>" for key in METRIC_KEYS)
    table = (
        f"<table id='metrics'><thead><tr><th>subset</th>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    note = "".join(f"<p class='note'>{html.escape(line)}</p>" for line in notes)
    return table + "<p class='note'>Scores x100 (CIDEr 1.0 = 100).</p>" + note


def _run_table(summary):
    cells = [
        f"<tr><td>{key}</td><td>{html.escape(str(summary[key]))}</td></tr>"
        for key in RUN_KEYS
        if key in summary
    ]
    if not cells:
        return ""
    return f"<table id='run'><tbody>{''.join(cells)}</tbody></table>"


def _curves_section(run_dir, history):
    images = []
    loss_dir = os.path.join(run_dir, "loss_imgs")
    pngs = sorted(
        name for name in (os.listdir(loss_dir) if os.path.isdir(loss_dir) else [])
        if name.endswith(".png")
    )
    for name in pngs:
        images.append(_image_tag(_read_bytes(os.path.join(loss_dir, name)), name))
    if not pngs:
        drawn = _plot_columns(history, ("loss", "val_loss"), "Loss")
        if drawn:
            images.append(_image_tag(drawn, "loss"))
    reward = None
    if "reward" in history:
        reward = _plot_columns(history, REWARD_KEYS, "Self-critical reward")
        if reward:
            images.append(_image_tag(reward, "reward"))
    if not images:
        return "<p class='note'>No loss curves (no history.csv).</p>"
    return f"<div class='plots'>{''.join(images)}</div>"


def _first_references(samples_path):
    """Clip id -> first reference, from a run's `samples.txt` (if any)."""
    references = {}
    if not os.path.exists(samples_path):
        return references
    clip_id = None
    with open(samples_path, encoding="utf-8") as handle:
        for line in handle:
            if not line.startswith(" "):
                clip_id = line.strip()
            elif line.strip().startswith("reference:") and clip_id is not None:
                references[clip_id] = line.split("reference:", 1)[1].strip()
    return references


def _drawable(run_dir):
    """Why `visualize_run` cannot draw this run's clips, or None if it can."""
    model_dir = os.path.join(run_dir, "model")
    if not os.path.isdir(model_dir):
        return "the run folder has no model/"
    if not os.path.isdir(os.path.join(run_dir, "data")):
        return "the run folder has no data/ (its clips live elsewhere)"
    try:  # the backbone's config, as keras-hub writes it in a preset folder
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as handle:
            input_kind = json.load(handle)["config"].get("input_kind", "frames")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"model/config.json could not be read ({error})"
    if input_kind != "frames":
        return "the model reads cached features, not frames"
    return None


def _prediction_cards(run_dir, num_clips):
    """Text-only entries from `predictions.json`: caption and first reference."""
    path = os.path.join(run_dir, "predictions.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        predictions = json.load(handle)
    references = _first_references(os.path.join(run_dir, "samples.txt"))
    return [
        {
            "clip_id": clip_id,
            "image": None,
            "caption": caption,
            "references": [references[clip_id]] if clip_id in references else [],
        }
        for clip_id, caption in list(predictions.items())[:num_clips]
    ]


def _clips_section(run_dir, num_clips, visuals_dir):
    index_path = os.path.join(visuals_dir, "index.json")
    index = None
    note = ""
    if os.path.exists(index_path):
        with open(index_path, encoding="utf-8") as handle:
            index = json.load(handle)
    if not index or len(index) < num_clips:
        reason = _drawable(run_dir)
        if reason is None:
            from keras_pvc.apps.visualize import visualize_run

            index = visualize_run(run_dir, num_clips=num_clips, out_dir=visuals_dir)
        elif not index:
            index = _prediction_cards(run_dir, num_clips)
            note = f"<p class='note'>Captions only: {html.escape(reason)}.</p>"
    if not index:
        return "<p class='note'>No clips: the run folder has no model/ or data/.</p>"
    cards = []
    for entry in index[:num_clips]:
        image = ""
        if entry.get("image"):
            image_path = os.path.join(visuals_dir, entry["image"])
            if os.path.exists(image_path):
                image = _image_tag(_read_bytes(image_path), entry["clip_id"])
        references = "".join(
            f"<li>{html.escape(reference)}</li>" for reference in entry["references"]
        )
        cards.append(
            "<div class='clip'>"
            f"<div class='id'>{html.escape(entry['clip_id'])}</div>"
            f"<div class='caption'>{html.escape(entry['caption'] or '(empty)')}</div>"
            f"<ul>{references}</ul>{image}</div>"
        )
    return f"{note}<div class='clips'>{''.join(cards)}</div>"


def write_report(run_dir, out_path=None, num_clips=8):
    """Writes a run folder's self-contained HTML report.

    Args:
        run_dir: str or path-like. The run folder.
        out_path: str or None. Default `run_dir/report.html`.
        num_clips: int. Test clips shown; drawn into `run_dir/visuals` with
            `visualize_run` when that folder has no `index.json`.

    Returns:
        str, the path of the report.
    """
    from keras_pvc.training.callbacks import read_history

    run_dir = os.fspath(run_dir)
    out_path = os.fspath(out_path) if out_path else os.path.join(run_dir, "report.html")
    summary = {}
    metrics_path = os.path.join(run_dir, "metrics.json")
    if os.path.exists(metrics_path):
        with open(metrics_path, encoding="utf-8") as handle:
            summary = json.load(handle)
    history = read_history(os.path.join(run_dir, "history.csv"))
    name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    visuals_dir = os.path.join(run_dir, "visuals")
    sections = [
        ("Metrics", _metrics_section(summary) + _run_table(summary)),
        ("Training curves", _curves_section(run_dir, history)),
        ("Test clips", _clips_section(run_dir, num_clips, visuals_dir)),
    ]
    body = "".join(
        f"<section><h2>{title}</h2>{content}</section>" for title, content in sections
    )
    subtitle = " · ".join(
        f"{key} {summary[key]}" for key in ("preset", "epochs") if key in summary
    )
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>keras_pvc run: {html.escape(name)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<header><h1>keras_pvc run: {html.escape(name)}</h1>"
        f"<p>{html.escape(subtitle)}</p></header>"
        f"<main>{body}</main></body></html>\n"
    )
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    temporary = out_path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(page)
    os.replace(temporary, out_path)
    return out_path
