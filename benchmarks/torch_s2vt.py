"""A PyTorch S2VT for speed comparisons (benchmark-only; needs `torch`).

Two shapes:

- `TorchS2VT` is the same network as keras_pvc's `s2vt` preset, layer for
  layer: Linear(4096 -> 1000) + tanh, dropout, an LSTM of 1000 over the 80
  frames, whose final state starts an LSTM of 1000 over the 21 caption
  inputs (embedding 500), dropout, Linear(1000 -> 3000). Same FLOPs as ours.
- `TorchS2VTOriginal` is Venugopalan et al.'s layout: two stacked LSTMs run
  for 80 + 21 steps; the first reads frames and then *zeros* while the words
  are decoded, the second reads `[h1; zeros]` while encoding and
  `[h1; word]` while decoding. It spends time on inputs known to be zero,
  which the encoder-decoder layout (ours and `TorchS2VT`) never computes.

Used by `train_throughput.py` and `decode_latency.py`; not part of the
package, and tests never import it.
"""

import torch
from torch import nn


class TorchS2VT(nn.Module):
    def __init__(
        self,
        feature_dim=4096,
        hidden_dim=1000,
        embedding_dim=500,
        vocabulary_size=3000,
        dropout=0.3,
    ):
        super().__init__()
        self.input_projection = nn.Linear(feature_dim, hidden_dim)
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = nn.LSTM(hidden_dim, hidden_dim, batch_first=True)
        self.token_embedding = nn.Embedding(vocabulary_size, embedding_dim)
        self.embedding_dropout = nn.Dropout(dropout)
        self.decoder = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.output_dropout = nn.Dropout(dropout)
        self.output_dense = nn.Linear(hidden_dim, vocabulary_size)

    def encode(self, features):
        projected = self.input_dropout(torch.tanh(self.input_projection(features)))
        _, state = self.encoder(projected)
        return state

    def forward(self, features, token_ids):
        state = self.encode(features)
        embedded = self.embedding_dropout(self.token_embedding(token_ids))
        hidden, _ = self.decoder(embedded, state)
        return self.output_dense(self.output_dropout(hidden))

    @torch.no_grad()
    def greedy(self, features, max_length=21, bos_id=2):
        """Greedy decoding, one Python iteration per word (as PyTorch does)."""
        state = self.encode(features)
        token = torch.full((features.shape[0], 1), bos_id, dtype=torch.long)
        words = []
        for _ in range(max_length):
            hidden, state = self.decoder(self.token_embedding(token), state)
            token = self.output_dense(hidden).argmax(-1)
            words.append(token)
        return torch.cat(words, 1)


class TorchS2VTOriginal(nn.Module):
    def __init__(
        self,
        feature_dim=4096,
        hidden_dim=1000,
        embedding_dim=500,
        vocabulary_size=3000,
        dropout=0.3,
    ):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.input_projection = nn.Linear(feature_dim, hidden_dim)
        self.input_dropout = nn.Dropout(dropout)
        self.frame_lstm = nn.LSTM(hidden_dim, hidden_dim, batch_first=True)
        self.token_embedding = nn.Embedding(vocabulary_size, embedding_dim)
        self.word_lstm = nn.LSTM(hidden_dim + embedding_dim, hidden_dim, batch_first=True)
        self.output_dropout = nn.Dropout(dropout)
        self.output_dense = nn.Linear(hidden_dim, vocabulary_size)

    def forward(self, features, token_ids):
        batch_size, num_frames, _ = features.shape
        caption_length = token_ids.shape[1]
        projected = self.input_dropout(torch.tanh(self.input_projection(features)))
        # The frame LSTM reads zeros while the words are decoded...
        padding = projected.new_zeros(batch_size, caption_length, projected.shape[-1])
        frame_states, _ = self.frame_lstm(torch.cat([projected, padding], 1))
        # ...and the word LSTM reads zero words while the frames are encoded.
        embedded = self.token_embedding(token_ids)
        words = torch.cat(
            [embedded.new_zeros(batch_size, num_frames, self.embedding_dim), embedded], 1
        )
        hidden, _ = self.word_lstm(torch.cat([frame_states, words], -1))
        return self.output_dense(self.output_dropout(hidden[:, num_frames:]))


def train_step_function(model, learning_rate=1e-4, clipnorm=5.0):
    """Adam + masked cross-entropy + gradient clipping, as `VideoCaptioner`."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

    def train_step(features, token_ids, labels, padding_mask):
        optimizer.zero_grad(set_to_none=True)
        logits = model(features, token_ids)
        losses = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
        )
        weights = padding_mask.reshape(-1).float()
        loss = (losses * weights).sum() / weights.sum()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clipnorm)
        optimizer.step()
        return loss

    return train_step
