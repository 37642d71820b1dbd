"""MANN: an LSTM controller with an external memory, read by content, written by LRUA.

Santoro, Bartunov, Botvinick, Wierstra & Lillicrap 2016, "One-shot Learning with
Memory-Augmented Neural Networks", arXiv:1605.06065, Sec. 3.

The task is black_box.py's: a sequence of (image, previous label) pairs, the current label to
predict. The LSTM must hold every image-label binding in its cell state; the MANN writes them to
a memory matrix M_t (N slots × W numbers) that the controller's weights do not have to encode.

Reading, by content. At step t the controller emits a key k_t per read head; the read weights
are a softmax over the cosine similarity of the key to every memory row, and the read vector
r_t is their weighted sum of rows:

    K(k, m) = k·m / (||k|| ||m||)
    w^r_t(i) = exp K(k_t, M_t(i)) / Σ_j exp K(k_t, M_t(j))        (sums to 1 over slots)
    r_t = Σ_i w^r_t(i) M_t(i)

Writing, by "least recently used access" (LRUA). Each slot has a usage, decayed by γ and fed
by every read and write of the slot; the least-used weights mark the n least-used slots
(n = the number of read heads):

    w^u_t = γ w^u_{t-1} + w^r_t + w^w_t
    w^lu_t(i) = 1 if w^u_t(i) <= m(w^u_t, n) else 0,     m(v, n) = the n-th smallest entry of v
    w^w_t = σ(α) w^r_{t-1} + (1 - σ(α)) w^lu_{t-1}

so a write goes either to the slot just read (σ(α) ≈ 1: update a memory, e.g. a class seen
again) or to rarely used slots (σ(α) ≈ 0: store something new). Before writing, the single
least-used slot (by w^u_{t-1}) is zeroed; then the key is added under the write weights:

    M_t(i) = M_{t-1}(i) + w^w_t(i) k_t

With several heads, each head h has its own key, gate α_h and read weights, w^lu is shared and
the usage sums every head's weights. The output is a linear layer on [h_t, r_t], and the next
step's controller input is [x_{t+1}, onehot(y_t), r_t].

Choices the paper leaves open, made here: α is computed from the controller state per head
(σ(α_t) = sigmoid(W_α h_t + b_α)); keys are tanh(W_k h_t + b_k); M_0 = 0, w^u_0 = 0, w^r_0 = 0;
ties in the usage are broken by slot index, so that w^lu marks exactly n slots (all usages are
equal at the start, and the ≤ rule would mark every slot). Within a step the memory is written
first (with the previous step's weights) and then read with the new key. Defaults (128 slots ×
40, a 200-unit LSTM, 4 heads, γ = 0.95) are those of the widely used reproduction
github.com/tristandeleu/ntm-one-shot. `run` returns every step's read weights, write weights
and usage, for the figures.

Deviations, each an option and off by default (write="key", key_strength=False is the paper):

* `write="add"` writes a separate vector a_t = tanh(W_a h_t + b_a) instead of the key, as in
  Neural Turing Machines (Graves et al. 2014, arXiv:1410.5401) and several MANN reproductions.
* `write="bind"` (the course's) writes, at step t, the previous step's add vector next to the
  label that has just arrived, in rows of width + way numbers (and keys of as many):

      v_t = [a_{t-1}, onehot(y_{t-1})],   a_t = tanh(W_a h_t + b_a),  a_0 = 0
      M_t(i) = M_{t-1}(i) + w^w_t(i) v_t

  Why: the label of image x_{t-1} arrives with x_t, one step later. With the paper's write the
  controller has to learn to keep a code of x_{t-1} for one step and to put it in memory
  together with the label, before the memory can help at all; on a CPU budget of some 20,000
  episodes it mostly does not get there (book/04_memory/mann_omniglot). Here a_{t-1}, computed
  from h_{t-1} while x_{t-1} was in view, is kept for one step by the module (a fixed delay,
  not learned), and the label is stored verbatim, so the last `way` numbers of a read are a
  vote over labels, Σ_i w^r_t(i) onehot(label of slot i). Reading and LRUA are unchanged.
  Nothing leaks: at step t the memory holds the labels y_1..y_{t-1} only.
* `key_strength=True` sharpens the reads with the NTM's key strength β,
  w^r = softmax(β K) with β = 1 + softplus(W_β h_t + b_β): with similarities in [-1, 1] the
  paper's read can give one slot at most e/(e + (n-1)/e) of the weight (19% of 32 slots, 5% of
  128), so a read is always a blend of many slots.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.memory.black_box import (
    SequenceBatch,
    encode_steps,
    pixels,
    previous_label_inputs,
    sequence_loss,
)

WRITES = ("key", "add", "bind")


def cosine_read_weights(
    keys: torch.Tensor,
    memory: torch.Tensor,
    strength: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """w^r = softmax_i K(k, M(i)): keys [B, H, W], memory [B, N, W] -> weights [B, H, N].

    The norms are sqrt(||v||² + eps), smooth at v = 0, so an empty slot (M_0 = 0) has
    similarity 0 and a finite gradient.
    """
    if keys.ndim != 3 or memory.ndim != 3 or keys.shape[-1] != memory.shape[-1]:
        raise ValueError(
            f"keys has shape {tuple(keys.shape)} and memory {tuple(memory.shape)}; expected"
            " keys [batch, heads, width] and memory [batch, slots, width]"
        )
    keys = keys * torch.rsqrt((keys**2).sum(dim=-1, keepdim=True) + eps)
    memory = memory * torch.rsqrt((memory**2).sum(dim=-1, keepdim=True) + eps)
    similarity = keys @ memory.transpose(1, 2)  # [B, H, N], in [-1, 1]
    if strength is not None:  # β [B, H]: softmax(β K), NTM's sharpening (key_strength=True)
        similarity = strength[..., None] * similarity
    return torch.softmax(similarity, dim=-1)


def least_used(usage: torch.Tensor, n: int) -> torch.Tensor:
    """w^lu: 1 on the n least-used slots, 0 elsewhere. usage [B, N] -> [B, N].

    Equal usages are ranked by slot index (a stable sort), so exactly n slots are marked.
    """
    if not 1 <= n <= usage.shape[-1]:
        raise ValueError(f"n={n}; use 1 <= n <= the number of slots ({usage.shape[-1]})")
    order = torch.sort(usage, dim=-1, stable=True).indices
    return torch.zeros_like(usage).scatter(-1, order[..., :n], 1.0)


def lrua_write_weights(
    previous_read: torch.Tensor, previous_least_used: torch.Tensor, gate: torch.Tensor
) -> torch.Tensor:
    """w^w_t = σ(α) w^r_{t-1} + (1 - σ(α)) w^lu_{t-1}.

    previous_read [B, H, N]; previous_least_used [B, N] (shared by the heads); gate = σ(α),
    [B, H] in [0, 1]. Returns [B, H, N].
    """
    gate = gate[..., None]
    return gate * previous_read + (1 - gate) * previous_least_used[:, None, :]


def usage_update(
    previous_usage: torch.Tensor, read: torch.Tensor, write: torch.Tensor, gamma: float
) -> torch.Tensor:
    """w^u_t = γ w^u_{t-1} + Σ_heads w^r_t + Σ_heads w^w_t. usage [B, N], weights [B, H, N]."""
    return gamma * previous_usage + read.sum(dim=1) + write.sum(dim=1)


def write_memory(
    memory: torch.Tensor,
    write_weights: torch.Tensor,
    vectors: torch.Tensor,
    previous_usage: torch.Tensor,
) -> torch.Tensor:
    """Zero the least-used slot (by w^u_{t-1}), then M_t(i) = M_{t-1}(i) + Σ_h w^w_h(i) v_h.

    memory [B, N, W], write_weights [B, H, N], vectors (the keys, or add vectors) [B, H, W],
    previous_usage [B, N]. Returns the new memory (the input is not modified).
    """
    slot = torch.argmin(previous_usage, dim=-1)  # the first minimum: same tie rule as least_used
    keep = 1.0 - F.one_hot(slot, memory.shape[1]).to(memory.dtype)
    return memory * keep[..., None] + write_weights.transpose(1, 2) @ vectors


@dataclass(eq=False)
class MANNTrace:
    """Everything a MANN did over a batch of sequences, for plots and checks."""

    logits: torch.Tensor  # [B, T, way]
    read_weights: torch.Tensor  # [B, T, heads, slots], each row sums to 1
    write_weights: torch.Tensor  # [B, T, heads, slots]
    usage: torch.Tensor  # [B, T, slots], after step t
    gate: torch.Tensor  # [B, T, heads]: σ(α), 1 = write where just read, 0 = least used
    reads: torch.Tensor  # [B, T, heads, row width]: r_t of each head
    memory: torch.Tensor  # [B, slots, row width]: the memory after the last step


class MANN(nn.Module):
    """Memory-augmented neural network (LSTM controller + LRUA memory) for label sequences.

    way: N labels per episode. encoder / feature_dim: as BlackBoxLSTM (default: 20×20 pixels).
    hidden: controller LSTM units. slots, width: the memory matrix is slots × width.
    heads: read heads (each also writes); n of the LRUA equation. gamma: usage decay γ.
    write: "key" (the paper: the read key is written), "add" (a separate add vector, NTM) or
        "bind" (the previous step's add vector with the label just given, see the module
        docstring; memory rows are then width + way numbers).
    key_strength: if True, sharpen the reads, w^r = softmax(β K) with β = 1 + softplus(W_β h_t)
        per head (the Neural Turing Machine's key strength; not in the MANN paper).
    Input: a SequenceBatch; output: logits [B, T, N]. `run` also returns the memory trace.
    """

    def __init__(
        self,
        way: int = 5,
        encoder: nn.Module | None = None,
        feature_dim: int = 400,
        hidden: int = 200,
        slots: int = 128,
        width: int = 40,
        heads: int = 4,
        gamma: float = 0.95,
        write: str = "key",
        key_strength: bool = False,
    ) -> None:
        super().__init__()
        if way < 2:
            raise ValueError(f"way={way}; classifying needs way >= 2 labels")
        if not 1 <= heads <= slots:
            raise ValueError(f"heads={heads}; use 1 <= heads <= slots={slots}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma}; the usage decay must be in [0, 1]")
        if write not in WRITES:
            raise ValueError(f"write={write!r}; use one of {WRITES}")
        self.way, self.feature_dim, self.hidden = way, feature_dim, hidden
        self.slots, self.width, self.heads = slots, width, heads
        self.gamma, self.write, self.key_strength = gamma, write, key_strength
        # A memory row: `width` numbers, and with write="bind" the `way` numbers of a label.
        self.row_width = width + (way if write == "bind" else 0)
        row = self.row_width
        self.encoder = pixels(20) if encoder is None else encoder
        # The controller LSTM, written out (see `run`): its gates take [x_t, onehot(y_{t-1})]
        # through `input_gates`, computed for all steps at once, and [h_{t-1}, r_{t-1}] through
        # `recurrent_gates`, step by step.
        self.input_gates = nn.Linear(feature_dim + way, 4 * hidden)
        self.recurrent_gates = nn.Linear(hidden + heads * row, 4 * hidden, bias=False)
        # The "interface", all from h_t: per head a key, a gate α, (key_strength) a strength β
        # and (write="add" or "bind") an add vector.
        self._interface_sizes = [heads * row, heads] + [heads] * key_strength
        self._interface_sizes += [heads * width] * (write != "key")
        self.interface = nn.Linear(hidden, sum(self._interface_sizes))
        self.head = nn.Linear(hidden + heads * row, way)

    def forward(self, batch: SequenceBatch) -> torch.Tensor:
        return self.run(batch).logits

    def loss(self, logits: torch.Tensor, batch: SequenceBatch) -> torch.Tensor:
        return sequence_loss(logits, batch)

    def run(self, batch: SequenceBatch) -> MANNTrace:
        """Process the sequences step by step; return the logits and the memory trace."""
        batch.validate()
        if batch.way != self.way:
            raise ValueError(f"the batch has way={batch.way} but the model way={self.way}")
        features = encode_steps(self.encoder, batch.x, self.feature_dim)
        labels = previous_label_inputs(batch.y, self.way, features.dtype)
        # One matrix product for the input part of every step's gates, instead of T small ones;
        # unbind (not input_gates[:, t]) so that backward stacks the T gradients once instead of
        # filling a zero tensor of the whole [B, T, 4·hidden] for every step.
        input_gates = self.input_gates(torch.cat([features, labels], dim=-1)).unbind(1)
        given = labels.unbind(1)  # onehot(y_{t-1}), step by step (written by write="bind")
        b, steps = batch.y.shape
        heads, width, row = self.heads, self.width, self.row_width
        zeros = features.new_zeros
        h, c = zeros(b, self.hidden), zeros(b, self.hidden)
        memory = zeros(b, self.slots, row)
        read_weights, usage = zeros(b, heads, self.slots), zeros(b, self.slots)
        read = zeros(b, heads * row)
        previous_add = zeros(b, heads, width)  # a_{t-1} (write="bind"); a_0 := 0
        trace: dict[str, list[torch.Tensor]] = {k: [] for k in ("hr", "r", "w", "u", "g")}
        # The recurrence is a loop over time; every step is batched over the B episodes.
        for t in range(steps):
            gates = input_gates[t] + self.recurrent_gates(torch.cat([h, read], dim=-1))
            i, f, g, o = gates.chunk(4, dim=-1)  # the LSTM equations, as nn.LSTMCell has them
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            parts = self.interface(h).split(self._interface_sizes, dim=-1)
            keys = torch.tanh(parts[0]).view(b, heads, row)
            gate = torch.sigmoid(parts[1])  # σ(α), one per head
            strength = None
            if self.key_strength:  # β >= 1: a read at least as sharp as the paper's
                strength = 1 + F.softplus(parts[2])
            if self.write == "key":
                vectors = keys  # the paper writes the key itself
            else:
                add = torch.tanh(parts[-1]).view(b, heads, width)
                if self.write == "add":
                    vectors = add
                else:  # "bind": the image code of step t-1 with the label that just arrived
                    label = given[t][:, None, :].expand(b, heads, self.way)
                    vectors = torch.cat([previous_add, label], dim=-1)
                    previous_add = add
            # LRUA: where to write comes from the previous step's reads and usage.
            write_weights = lrua_write_weights(read_weights, least_used(usage, heads), gate)
            memory = write_memory(memory, write_weights, vectors, usage)
            read_weights = cosine_read_weights(keys, memory, strength)
            read = (read_weights @ memory).flatten(start_dim=1)  # r_t, all heads side by side
            usage = usage_update(usage, read_weights, write_weights, self.gamma)
            trace["hr"].append(torch.cat([h, read], dim=-1))
            trace["r"].append(read_weights)
            trace["w"].append(write_weights)
            trace["u"].append(usage)
            trace["g"].append(gate)
        stacked = {k: torch.stack(v, dim=1) for k, v in trace.items()}
        logits = self.head(stacked["hr"])  # the output layer on [h_t, r_t], all steps at once
        reads = stacked["hr"][..., self.hidden :].unflatten(-1, (heads, row))
        return MANNTrace(
            logits, stacked["r"], stacked["w"], stacked["u"], stacked["g"], reads, memory
        )
