"""Which readout of region features lets a small model name the attributes?

A diagnosis for issue 15, not a captioner: on the cached EfficientNet-Lite0
region grids of a held-out set (what `benchmarks/heldout_eval.py --preset
regions` leaves in its work folder), a per-region projection, a readout
VARIANT and an LSTM over the 8 frames are trained with one softmax head per
attribute (colour, shape, motion of one-shape clips; mover, relation, other of
pairs) on the training split, and scored on the test split. Prints one JSON
line and the motion confusion matrix. Never asserts.

    EP=40 python benchmarks/readout_probe.py W/features_sprites_250_40_s0_regions \
        W/sprites_250_40_s0 VARIANT [SEED]

VARIANT: mean, attn, slots4, kp, diff, geo8 (the 8 `track_geometry`
numbers alone), motion, motiongeo, motionbw, motionbmax, roles, moddrop0.5.
"""
import json, sys, os, time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
from keras import ops, layers

FEAT = sys.argv[1]; DATA = sys.argv[2]; VARIANT = sys.argv[3]; SEED = int(sys.argv[4]) if len(sys.argv) > 4 else 0
meta = json.load(open(f"{DATA}/metadata.json"))["scenes"]
split = dict(l.strip().split("\t") for l in open(f"{DATA}/split.tsv") if l.strip() and not l.startswith("clip"))
ids = sorted(meta)
X = np.stack([np.load(f"{FEAT}/{i}.npy").astype("float32") for i in ids])
COL = ["red", "green", "blue", "yellow"]; SH = ["circle", "square", "triangle"]
MO = ["left", "right", "up", "down", "grow", "shrink"]; RE = ["toward", "away"]
def lab(s):
    single = s["type"] == "single"
    m = s["mover"]
    y = dict(mc=COL.index(m["color"]), ms=SH.index(m["shape"]),
             mo=MO.index(s["motion"]) if single else -1,
             re=-1 if single else RE.index(s["relation"]),
             oc=-1 if single else COL.index(s["other"]["color"]),
             os=-1 if single else SH.index(s["other"]["shape"]))
    return y
Y = {k: np.array([lab(meta[i])[k] for i in ids]) for k in ["mc", "ms", "mo", "re", "oc", "os"]}
tr = np.array([split.get(i, "train") == "train" for i in ids])
NC = dict(mc=4, ms=3, mo=6, re=2, oc=4, os=3)
keras.utils.set_random_seed(SEED)
N = 49
coords = np.stack(np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-1, 1, 7), indexing="xy"), -1).reshape(49, 2).astype("float32")

inp = keras.Input((8, 49, 1280))
x = layers.Dense(256)(inp)  # per-region projection
x = layers.LayerNormalization()(x)
if VARIANT == "mean":
    h = ops.mean(x, axis=2)
elif VARIANT == "attn":
    w = ops.softmax(layers.Dense(1)(x), axis=2)
    h = ops.sum(w * x, axis=2)
elif VARIANT.startswith("slots"):
    K = int(VARIANT[5:] or 4)
    w = ops.softmax(layers.Dense(K)(x), axis=2)  # (B,T,N,K)
    what = ops.einsum("btnk,btnc->btkc", w, x)
    where = ops.einsum("btnk,nc->btkc", w, coords)
    h = ops.reshape(ops.concatenate([layers.Dense(32)(what), where * 3], -1), (-1, 8, K * 34))
elif VARIANT == "kp":
    w = ops.softmax(layers.Dense(16)(x), axis=2)
    where = ops.reshape(ops.einsum("btnk,nc->btkc", w, coords), (-1, 8, 32))
    h = ops.concatenate([ops.max(x, axis=2), where * 3], -1)
elif VARIANT == "diff":
    # motion saliency: regions whose features change; a slot for the moving thing and one for the static salient thing
    d = ops.concatenate([x[:, 1:] - x[:, :-1], x[:, -1:] - x[:, -2:-1]], 1)
    sal = layers.Dense(4)(ops.concatenate([x, d], -1))
    w = ops.softmax(sal, axis=2)
    what = ops.einsum("btnk,btnc->btkc", w, x)
    where = ops.einsum("btnk,nc->btkc", w, coords)
    h = ops.reshape(ops.concatenate([layers.Dense(32)(what), where * 3], -1), (-1, 8, 4 * 34))
elif VARIANT == "geo8":
    from keras_pvc.layers.motion_tracks import track_geometry
    h = track_geometry(inp, (7, 7)) * 3.0
elif VARIANT.startswith("roles"):
    from keras_pvc.layers.motion_tracks import track_geometry
    geo = track_geometry(inp, (7, 7)) * 3.0
    raw = inp
    clip_mean = ops.mean(raw, axis=1, keepdims=True)
    frame_mean = ops.mean(raw, axis=2, keepdims=True)
    ch = ops.sqrt(ops.sum(ops.square(raw - clip_mean), -1) + 1e-6)
    co = ops.sqrt(ops.sum(ops.square(raw - frame_mean), -1) + 1e-6)
    ch = ch / ops.mean(ch, axis=(1, 2), keepdims=True); co = co / ops.mean(co, axis=(1, 2), keepdims=True)
    w_m = ops.softmax(4.0 * ch, axis=2); w_o = ops.softmax(4.0 * (co - ch), axis=2)
    proj = layers.Dense(32)
    norm = layers.LayerNormalization()
    xm = norm(proj(ops.einsum("btn,btnc->btc", w_m, raw)))
    xo = norm(proj(ops.einsum("btn,btnc->btc", w_o, raw)))
    h = ops.concatenate([xm, xo, geo], -1)
elif VARIANT.startswith("moddrop"):
    from keras_pvc.layers.motion_tracks import track_geometry
    p = float(VARIANT[7:] or 0.5)
    geo = track_geometry(inp, (7, 7)) * 3.0
    w = ops.softmax(layers.Dense(1)(x), axis=2)
    what = layers.Dense(64)(ops.sum(w * x, axis=2))
    class StreamDrop(layers.Layer):
        def call(self, v, training=None):
            if not training:
                return v
            keep = ops.cast(keras.random.uniform((ops.shape(v)[0], 1, 1)) > p, v.dtype)
            return v * keep
    what = StreamDrop()(what)
    h = ops.concatenate([what, geo], -1)
elif VARIANT.startswith("motion"):
    raw = inp
    mean_t = ops.mean(raw, axis=1, keepdims=True)
    d = ops.sqrt(ops.sum(ops.square(raw - mean_t), -1) + 1e-6)  # (B,T,N) change from the clip's mean
    d = d / (ops.mean(d, axis=(1, 2), keepdims=True) + 1e-6)
    w = ops.softmax(4.0 * d, axis=2)
    where = ops.einsum("btn,nc->btc", w, coords)
    spread = ops.sum(w * ops.sum(ops.square(ops.convert_to_tensor(coords)[None, None] - ops.expand_dims(where, 2)), -1), -1, keepdims=True)
    mass = ops.mean(d, axis=2, keepdims=True)
    what = ops.einsum("btn,btnc->btc", w, x)
    parts = [where * 3, spread * 3, mass]
    if VARIANT == "motion":
        parts.append(layers.Dense(32)(what))
    if VARIANT in ("motionbw", "motionbmax"):
        src = ops.mean(what, axis=1) if VARIANT == "motionbw" else ops.max(ops.max(x, axis=2), axis=1)
        st = layers.Dropout(0.5)(layers.Dense(16)(src))
        parts.append(ops.repeat(ops.expand_dims(st, 1), 8, axis=1))
    h = ops.concatenate(parts, -1)
h = layers.Dropout(0.3)(h)
h = layers.LSTM(256)(h)
outs = {k: layers.Dense(NC[k], name=k)(h) for k in NC}
model = keras.Model(inp, outs)
def masked(y, p):
    y = ops.cast(ops.reshape(y, (-1,)), "int32"); valid = ops.cast(y >= 0, "float32")
    l = keras.losses.sparse_categorical_crossentropy(ops.maximum(y, 0), p, from_logits=True)
    return ops.sum(l * valid) / ops.maximum(ops.sum(valid), 1.0)
model.compile(keras.optimizers.Adam(1e-3), loss={k: masked for k in NC})
t = time.time()
model.fit(X[tr], {k: Y[k][tr] for k in NC}, batch_size=32, epochs=int(os.environ.get("EP", 60)), verbose=0)
P = model.predict(X, verbose=0)
res = {}
for name, m in (("train", tr), ("test", ~tr)):
    r = {}
    for k in NC:
        v = m & (Y[k] >= 0)
        r[k] = float((P[k][v].argmax(-1) == Y[k][v]).mean())
    single = m & (Y["mo"] >= 0); pair = m & (Y["re"] >= 0)
    r["single_all"] = float(np.mean([all(P[k][i].argmax() == Y[k][i] for k in ("mc", "ms", "mo")) for i in np.where(single)[0]]))
    r["pair_all"] = float(np.mean([all(P[k][i].argmax() == Y[k][i] for k in ("mc", "ms", "re", "oc", "os")) for i in np.where(pair)[0]]))
    res[name] = r
    if name == "test":
        single_idx = np.where(single)[0]
        conf = np.zeros((6, 6), int)
        for i in single_idx: conf[Y["mo"][i], P["mo"][i].argmax()] += 1
        print("motion confusion (rows true)", MO); print(conf)
print(VARIANT, SEED, f"{time.time()-t:.0f}s", json.dumps({n: {k: round(v, 2) for k, v in r.items()} for n, r in res.items()}))
