"""What a trained captioner looks at: frames, words, attention, regions.

Three steps, each usable alone:

- `explain_clip(model, frames, frame_mask)` captions one clip and computes
  what explains the caption: the decoder's attention over frames for every
  generated word `(L, T)` and the spatial graph's pooling weights (attention
  or keypoint heads) over the regions of every frame `(T, N)`.
- `plot_clip(frames, frame_mask, caption, references, ...)` draws one PNG: the
  generated caption and the references, a strip of the real frames, the
  attention as a words x frames heatmap and the region weights as a
  translucent heatmap over the most attended frame.
- `visualize_run(run_dir)` does both for the first test clips of a run folder
  (`keras-pvc demo`'s layout) and writes `run_dir/visuals/<clip_id>.png` and
  `run_dir/visuals/index.json` (captions and references, for the report).

Example:
```python
model = keras_pvc.from_preset("runs/demo/model")
frames, frame_mask = keras_pvc.video.read_frames("clip.avi", 8, size=(64, 64))
explained = explain_clip(model, frames, frame_mask)
plot_clip(frames, frame_mask, explained["caption"], ["a reference"],
          attention=explained["attention"], words=explained["words"],
          region_weights=explained["region_weights"],
          grid_shape=explained["grid_shape"], path="clip.png")
```
"""

import json
import os

import numpy as np

# Figure geometry, in inches at `DPI` dots per inch: a PNG is
# `FIGURE_WIDTH * DPI` pixels wide whatever the clip.
DPI = 100
FIGURE_WIDTH = 12.0
CAPTION_FONT_SIZE = 15
TEXT_FONT_SIZE = 11
# The frame the region weights are drawn on gets a frame of this colour.
HIGHLIGHT_COLOR = "#ff9900"


# === Computing ===


def graph_region_weights(layer, regions, adjacency=None):
    """The pooling weights of a `SpatialGraphConv` over regions.

    Args:
        layer: `SpatialGraphConv` with `pooling="attention"` or
            `"keypoints"` (the heads' mean: where the layer looks).
        regions: float tensor `(..., N, C)`: the region features the layer
            takes (a `FrameCNN`'s output).
        adjacency: optional explicit adjacency, as `call` takes it.

    Returns:
        float array `(..., N)`, summing to 1 over regions.
    """
    from keras import ops

    if getattr(layer, "pooling", None) not in ("attention", "keypoints"):
        raise ValueError(
            "Region weights exist only for attention or keypoint pooling; this graph "
            f"pools with {getattr(layer, 'pooling', None)!r}."
        )
    nodes = ops.convert_to_tensor(regions, "float32")
    if not layer.built:
        layer.build(nodes.shape)
    nodes = layer.propagate(nodes, adjacency, training=False)
    return ops.convert_to_numpy(layer.region_weights(nodes))


def _grid_shape_of(layer, num_regions):
    grid_shape = getattr(layer, "resolved_grid_shape", None) or layer.grid_shape
    if grid_shape is None:
        side = int(round(num_regions**0.5))
        grid_shape = (side, side)
    return tuple(int(size) for size in grid_shape)


def explain_clip(model, frames, frame_mask=None, sampler="greedy"):
    """Captions one clip and computes where the model looked.

    Args:
        model: `VideoCaptioner`.
        frames: array `(T, H, W, 3)` (uint8 or float RGB in [0, 255]) for a
            frames model, or the clip's features `(T, ...)` for a features
            model.
        frame_mask: bool array `(T,)` or None (every frame real).
        sampler: str or `keras_hub.samplers.Sampler`. Pass one instance when
            explaining many clips: `generate` compiles once per sampler.

    Returns:
        dict with
        - `caption`: str, the generated caption;
        - `ids`: int array: the generated word ids (no `<bos>`/`<eos>`);
        - `words`: list of str, one per row of `attention` (`["<eos>"]` for
          an empty caption);
        - `attention`: float array `(len(words), T)`: the decoder's attention
          over frames when it predicted each word (rows sum to 1 over real
          frames; with a region memory, what the regions took is left
          out), or None for a decoder without attention;
        - `region_weights`: float array `(T, N)`, the spatial graph's
          attention- or keypoint-pooling weights over each frame's regions
          (the heads' mean; rows sum to 1), or None (a features model, no
          graph, or mean/max pooling);
        - `grid_shape`: `(height, width)` of the region grid, or None.
    """
    from keras import ops

    from keras_pvc.models.video_captioner_preprocessor import BOS_ID
    from keras_pvc.models.video_captioner_preprocessor import EOS_ID

    backbone = model.backbone
    video = np.asarray(frames, "float32")[None]
    if frame_mask is None:
        frame_mask = np.ones(video.shape[1], bool)
    frame_mask = np.asarray(frame_mask, bool)[None]
    inputs = {backbone.input_kind: video, "frame_mask": frame_mask}

    generated = np.asarray(
        ops.convert_to_numpy(model.generate_ids(inputs, sampler))
    )[0]
    # Every word up to <eos>, as `generate` reads them: an untrained model
    # may emit <pad> mid-caption, which the caption drops (detokenize) and
    # the attention rows keep.
    ids = []
    for token in generated:
        if int(token) == EOS_ID:
            break
        ids.append(int(token))
    ids = np.asarray(ids, "int32")
    vocabulary = model.preprocessor.vocabulary
    words = [vocabulary[token] for token in ids] or ["<eos>"]
    caption = model.preprocessor.detokenize(np.append(ids, EOS_ID)[None])[0]

    # Teacher-force the generated caption: the decoder's step i reads token
    # i-1 and attends over frames to predict word i.
    sequence, memory_mask, hidden, cell = backbone.encode(inputs, training=False)
    token_ids = np.concatenate([[BOS_ID], ids])[: len(words)][None].astype("int32")
    _, attention = backbone.caption_decoder(
        token_ids,
        sequence,
        memory_mask,
        initial_state=(hidden, cell),
        return_attention=True,
    )
    if attention is not None:
        # The frames' share only (a region memory's entries follow them).
        attention = np.asarray(ops.convert_to_numpy(attention))[0][:, : video.shape[1]]

    region_weights, grid_shape = None, None
    graph = backbone.spatial_graph
    if (
        backbone.input_kind == "frames"
        and graph is not None
        and getattr(graph, "pooling", None) in ("attention", "keypoints")
    ):
        regions = backbone.frame_cnn(video, training=False)
        if len(regions.shape) == 4:
            region_weights = graph_region_weights(graph, regions)[0]
            grid_shape = _grid_shape_of(graph, region_weights.shape[-1])
    return {
        "caption": caption,
        "ids": ids,
        "words": words,
        "attention": attention,
        "region_weights": region_weights,
        "grid_shape": grid_shape,
    }


# === Drawing ===


def _shown_frames(real_frames, max_frames):
    if len(real_frames) <= max_frames:
        return list(real_frames)
    keep = np.round(np.linspace(0, len(real_frames) - 1, max_frames)).astype(int)
    return [real_frames[index] for index in keep]


def _pixel_box(axis, figure):
    """An axis' box `(left, top, right, bottom)` in the saved PNG's pixels."""
    extent = axis.get_window_extent(figure.canvas.get_renderer())
    height = figure.get_figheight() * figure.dpi
    return (
        int(round(extent.x0)),
        int(round(height - extent.y1)),
        int(round(extent.x1)),
        int(round(height - extent.y0)),
    )


def plot_clip(
    frames,
    frame_mask,
    caption,
    references,
    attention=None,
    words=None,
    region_weights=None,
    grid_shape=None,
    path="clip.png",
    region_frame=None,
    title=None,
    max_frames=12,
    max_references=5,
):
    """Draws one clip, its caption and the model's attention into a PNG.

    From top to bottom: the generated caption (bold) and up to
    `max_references` references; a strip of the real frames (at most
    `max_frames`, sampled uniformly), each titled with its index and mean
    attention; then, side by side, the decoder's attention as a heatmap of
    words x frames and the graph's region weights as a translucent heatmap
    over one frame (outlined in orange in the strip too).

    The PNG is `FIGURE_WIDTH * DPI` (1200) pixels wide; its height grows
    with what is drawn.

    Args:
        frames: uint8 array `(T, H, W, 3)`, RGB.
        frame_mask: bool array `(T,)` or None (every frame real).
        caption: str. The generated caption.
        references: list of str.
        attention: float array `(L, T)` or None.
        words: list of str, the `L` words labelling the attention rows.
        region_weights: float array `(N,)` (for `region_frame`) or `(T, N)`
            (one row per frame), or None.
        grid_shape: `(height, width)` with `height * width == N`; None for a
            square grid.
        path: str. The PNG to write (folders are created).
        region_frame: int or None. The frame to overlay the region weights
            on; None: the frame with the most attention (the first real
            frame without attention).
        title: str or None. A line above the caption (e.g. the clip id).
        max_frames: int. Frames shown in the strip.
        max_references: int. References listed.

    Returns:
        dict with `path`, `width` and `height` (pixels), `frame_boxes`
        (`{frame index: (left, top, right, bottom)}` of each frame shown in
        the strip, in PNG pixels) and `region_frame` (the frame under the
        region weights, or None).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import gridspec

    frames, frame_mask, real_frames = _checked_frames(frames, frame_mask)
    num_frames = len(frames)
    shown = _shown_frames(real_frames, max_frames)
    attention, words = _checked_attention(attention, words, num_frames)
    frame_attention = (
        attention.mean(axis=0) if attention is not None and len(attention) else None
    )
    weights = None
    if region_weights is None:
        region_frame = None
    else:
        if region_frame is None:  # the most attended frame, else the first real one
            region_frame = real_frames[0] if frame_attention is None else max(
                real_frames, key=lambda t: frame_attention[t]
            )
        weights, grid_shape = _region_grid(region_weights, region_frame, grid_shape)
    lines = _text_lines(title, caption, references, max_references)
    has_bottom = attention is not None or weights is not None
    strip_columns = max(len(shown), 4)
    figure, outer = _figure_grid(
        len(lines), strip_columns, len(attention) if attention is not None else 0, has_bottom
    )
    _draw_text(figure.add_subplot(outer[0]), lines)
    strip = gridspec.GridSpecFromSubplotSpec(
        1, strip_columns, subplot_spec=outer[1], wspace=0.05
    )
    frame_axes = _draw_frame_strip(
        figure, strip, frames, shown, frame_attention, region_frame
    )
    if has_bottom:
        # Columns: word labels, heatmap (+ colorbar), gap, frame (+ colorbar).
        longest_word = max((len(word) for word in words or ()), default=4)
        bottom = gridspec.GridSpecFromSubplotSpec(
            1, 5, subplot_spec=outer[2], wspace=0.0,
            width_ratios=[0.012 * longest_word + 0.02, 1.3, 0.22, 1.0, 0.1],
        )
        if attention is not None:
            _draw_attention(figure, bottom[0, 1], attention, words, real_frames)
        if weights is not None:
            _draw_region_weights(
                figure, bottom[0, 3], frames[region_frame], weights, grid_shape, region_frame
            )

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.canvas.draw()
    frame_boxes = {index: _pixel_box(axis, figure) for index, axis in frame_axes.items()}
    width_pixels, height_pixels = figure.canvas.get_width_height()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return {
        "path": path,
        "width": width_pixels,
        "height": height_pixels,
        "frame_boxes": frame_boxes,
        "region_frame": region_frame,
    }


def _text_lines(title, caption, references, max_references):
    """The lines above the strip, top down, as `(text, kind)` (`_TEXT_STYLES`)."""
    references = list(references)
    references_label = "references:"
    if len(references) > max_references:
        references_label = f"references ({max_references} of {len(references)}):"
    references = references[:max_references]
    lines = [(title, "title")] if title is not None else []
    lines.append((caption or "(empty caption)", "caption"))
    if references:
        lines.append((references_label, "label"))
        lines += [(f"• {reference}", "reference") for reference in references]
    return lines


def _figure_grid(text_lines, strip_columns, attention_rows, has_bottom):
    """`(figure, outer grid)`: rows for the text, the strip and the heatmaps,
    in inches that grow with what is drawn (`FIGURE_WIDTH` wide)."""
    import matplotlib.pyplot as plt
    from matplotlib import gridspec

    text_height = 0.35 + 0.27 * text_lines
    strip_height = FIGURE_WIDTH / strip_columns + 0.35
    bottom_height = max(3.6, 0.9 + 0.28 * attention_rows) if has_bottom else 0.0
    # Room under the heatmaps for the "frame" axis label.
    bottom_margin = 0.6 if has_bottom else 0.1
    figure_height = text_height + strip_height + bottom_height + bottom_margin
    figure = plt.figure(figsize=(FIGURE_WIDTH, figure_height), dpi=DPI)
    ratios = [text_height, strip_height] + ([bottom_height] if has_bottom else [])
    outer = gridspec.GridSpec(
        len(ratios), 1, figure=figure, height_ratios=ratios,
        left=0.02, right=0.98, top=0.99, bottom=bottom_margin / figure_height,
        hspace=0.12,
    )
    return figure, outer


def _checked_frames(frames, frame_mask):
    """`(frames as uint8, frame_mask, indices of the real frames)`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"`frames` must be (T, H, W, 3) RGB, got {frames.shape}.")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype("uint8")
    if frame_mask is None:
        frame_mask = np.ones(len(frames), bool)
    frame_mask = np.asarray(frame_mask, bool)
    real_frames = [int(index) for index in np.flatnonzero(frame_mask)]
    if not real_frames:
        raise ValueError("The clip has no real frame (`frame_mask` is all False).")
    return frames, frame_mask, real_frames


def _checked_attention(attention, words, num_frames):
    """`(attention (L, T) float32, L word labels)`, or `(None, words)`."""
    if attention is None:
        return None, words
    attention = np.asarray(attention, "float32")
    if attention.ndim != 2 or attention.shape[1] != num_frames:
        raise ValueError(
            f"`attention` must be (words, {num_frames}), got {attention.shape}."
        )
    words = list(words) if words is not None else [
        f"word {index}" for index in range(len(attention))
    ]
    if len(words) != len(attention):
        raise ValueError(
            f"{len(words)} words label {len(attention)} attention rows."
        )
    return attention, words


def _region_grid(region_weights, region_frame, grid_shape):
    """`(weights of region_frame as a (height, width) grid, grid_shape)`."""
    region_weights = np.asarray(region_weights, "float32")
    weights = region_weights[region_frame] if region_weights.ndim == 2 else region_weights
    num_regions = weights.shape[-1]
    if grid_shape is None:
        side = int(round(num_regions**0.5))
        grid_shape = (side, side)
    if grid_shape[0] * grid_shape[1] != num_regions:
        raise ValueError(
            f"{num_regions} region weights do not fill a {grid_shape} grid."
        )
    return weights.reshape(grid_shape), grid_shape


# How `_draw_text` draws each kind of line: (indent, font size, keywords).
_TEXT_STYLES = {
    "title": (0.0, TEXT_FONT_SIZE, {"color": "#555555"}),
    "caption": (0.0, CAPTION_FONT_SIZE, {"fontweight": "bold"}),
    "label": (0.0, TEXT_FONT_SIZE, {"color": "#555555"}),
    "reference": (0.02, TEXT_FONT_SIZE, {}),
}


def _draw_text(axis, lines):
    """The title, caption and references: `lines` of `(text, kind)`, top down."""
    axis.axis("off")
    line_step = 1.0 / len(lines)
    y = 1.0 - 0.5 * line_step
    for text, kind in lines:
        indent, font_size, style = _TEXT_STYLES[kind]
        axis.text(indent, y, text, fontsize=font_size, va="center",
                  transform=axis.transAxes, **style)
        y -= line_step


def _draw_frame_strip(figure, strip, frames, shown, frame_attention, region_frame):
    """The strip of `shown` frames (RGB: matplotlib's order, as `read_frames`
    gives); returns `{frame index: axis}`."""
    frame_axes = {}
    for column, frame_index in enumerate(shown):
        axis = figure.add_subplot(strip[0, column])
        axis.imshow(frames[frame_index], interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        label = f"t={frame_index}"
        if frame_attention is not None:
            label += f"  {frame_attention[frame_index]:.2f}"
        axis.set_title(label, fontsize=TEXT_FONT_SIZE - 1, pad=3)
        if frame_index == region_frame:
            for spine in axis.spines.values():
                spine.set_edgecolor(HIGHLIGHT_COLOR)
                spine.set_linewidth(3)
        frame_axes[frame_index] = axis
    return frame_axes


def _draw_attention(figure, spec, attention, words, real_frames):
    """The decoder's attention as a words x real frames heatmap."""
    axis = figure.add_subplot(spec)
    shown_attention = attention[:, real_frames]
    image = axis.imshow(shown_attention, aspect="auto", cmap="viridis",
                        vmin=0.0, vmax=max(float(shown_attention.max()), 1e-6),
                        interpolation="nearest")
    axis.set_yticks(range(len(words)), words, fontsize=TEXT_FONT_SIZE)
    step = max(1, len(real_frames) // 16)
    ticks = list(range(0, len(real_frames), step))
    axis.set_xticks(ticks, [str(real_frames[i]) for i in ticks],
                    fontsize=TEXT_FONT_SIZE - 1)
    axis.set_xlabel("frame", fontsize=TEXT_FONT_SIZE)
    axis.set_title("decoder attention over frames", fontsize=TEXT_FONT_SIZE + 1)
    colorbar = figure.colorbar(image, ax=axis, fraction=0.04, pad=0.02)
    colorbar.ax.tick_params(labelsize=TEXT_FONT_SIZE - 2)


def _draw_region_weights(figure, spec, frame, weights, grid_shape, region_frame):
    """The region weights as a translucent heatmap over `frame`, with the grid."""
    from matplotlib import patches

    axis = figure.add_subplot(spec)
    height, width = frame.shape[:2]
    axis.imshow(frame, interpolation="nearest", extent=(0, width, height, 0))
    image = axis.imshow(weights, cmap="inferno", alpha=0.55,
                        interpolation="nearest", extent=(0, width, height, 0),
                        vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    for row in range(1, grid_shape[0]):
        axis.axhline(row * height / grid_shape[0], color="white", lw=0.4, alpha=0.5)
    for col in range(1, grid_shape[1]):
        axis.axvline(col * width / grid_shape[1], color="white", lw=0.4, alpha=0.5)
    axis.add_patch(patches.Rectangle((0, 0), width, height, fill=False,
                                     edgecolor=HIGHLIGHT_COLOR, linewidth=3))
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(
        f"graph region weights, frame t={region_frame} "
        f"({grid_shape[0]}x{grid_shape[1]} regions)",
        fontsize=TEXT_FONT_SIZE + 1,
    )
    colorbar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.03,
                               format="%.3f")
    colorbar.ax.tick_params(labelsize=TEXT_FONT_SIZE - 2)


# === Run folders ===


def visualize_run(run_dir, num_clips=8, out_dir=None, split="test", sampler="greedy"):
    """Explains and draws the first clips of a run folder's split.

    Loads the model from `run_dir/model` and the clips from `run_dir/data`
    (the MSVD layout `keras-pvc demo` writes), reads each clip's frames as
    the model was trained on them, and writes `<out_dir>/<clip_id>.png` and
    `<out_dir>/index.json` (clip ids, images, captions, references).

    Args:
        run_dir: str or path-like. The run folder.
        num_clips: int. Clips to draw, the first of the split.
        out_dir: str or None. Default `run_dir/visuals`.
        split: str. `"test"`, `"val"` or `"train"`.
        sampler: str or `keras_hub.samplers.Sampler`.

    Returns:
        list of dicts with `clip_id`, `image` (file name in `out_dir`),
        `caption` and `references`, as written to `index.json`.
    """
    import keras_pvc
    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.video import read_frames

    run_dir = os.fspath(run_dir)
    out_dir = os.fspath(out_dir) if out_dir else os.path.join(run_dir, "visuals")
    model = keras_pvc.from_preset(os.path.join(run_dir, "model"))
    if model.backbone.input_kind != "frames":
        raise ValueError(
            "visualize_run draws models that read frames; this one takes "
            "cached features. Use `explain_clip` with the features and "
            "`plot_clip` with frames from `keras_pvc.video.read_frames`."
        )
    preprocessor = model.preprocessor
    frame_size = preprocessor.frame_size or tuple(model.backbone.video_input_shape[:2])
    clips = [
        clip
        for clip in load_msvd(os.path.join(run_dir, "data"))
        if clip.split == split and clip.video_path and os.path.exists(clip.video_path)
    ][:num_clips]
    os.makedirs(out_dir, exist_ok=True)
    index = []
    for clip in clips:
        frames, frame_mask = read_frames(
            clip.video_path, preprocessor.num_frames, size=frame_size,
            start=clip.start, end=clip.end,
        )
        explained = explain_clip(model, frames, frame_mask, sampler=sampler)
        image = f"{clip.clip_id}.png"
        plot_clip(
            frames,
            frame_mask,
            explained["caption"],
            clip.references,
            attention=explained["attention"],
            words=explained["words"],
            region_weights=explained["region_weights"],
            grid_shape=explained["grid_shape"],
            path=os.path.join(out_dir, image),
            title=clip.clip_id,
        )
        index.append(
            {
                "clip_id": clip.clip_id,
                "image": image,
                "caption": explained["caption"],
                "references": list(clip.references),
            }
        )
    with open(os.path.join(out_dir, "index.json"), "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=2, ensure_ascii=False)
    return index
