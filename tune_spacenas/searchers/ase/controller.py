"""ASE-NAS controller (section III-B, IV-A and the Appendix): a graph encoder feeding an LSTM policy.

* ``EdgeSAGEConv``: one layer of the edge-aware GraphSAGE of Eqs. (5)-(7), a torch-geometric
  ``MessagePassing`` with mean aggregation; ``GraphEncoder`` stacks two of them. ``PointEncoder`` is
  the "no graph" ablation of section V-D (two fully connected layers on the nodes alone).
* ``ASEController``: the joint policy of section IV-A. An LSTM first evokes a subspace (global policy
  ``pi_G``: an attention pointer over the encoded nodes) and then makes ``M`` single-layer edits (local
  policy ``pi_L``: which layer, then which operation; choosing the current operation is a no-op), so
  ``beta = alpha (+) Delta alpha`` (Eq. 1) always satisfies ``D(alpha, beta) <= M``.

Details the paper leaves out follow the official code (chenyaofo/DSM-NAS, see ../shared/FACTS.md):
hidden size 64, the LSTM's first input is the mean of the node features, the centre is chosen by an
attention pointer, logits are squashed as ``c * tanh(logits)`` with ``c = 1.5`` (centre) and ``0.6``
(edits), parameters start from U(-0.1, 0.1), and a node's features also hold its centre's reward. Where
the official code feeds the LSTM an embedding of the chosen node's *index* before the edits, we feed
the chosen node's encoded features, so the local policy sees the evoked subspace (``pi_L(.|Omega_a)``).

Sampling runs without autograd, step by step with the LSTM's own weights; the policy-gradient update
recomputes the log-probabilities of the stored decisions in one batched pass (one ``nn.LSTM`` call
over the known sequence), so a decision costs a few milliseconds on one CPU core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from tune_spacenas.searchers.ase.graph import SubspaceGraph
from tune_spacenas.spaces.base import Architecture, SearchSpace

INIT_RANGE = 0.1


@dataclass(frozen=True)
class ControllerSettings:
    """The policy network's shape (``ASEController``'s arguments of the same names; the official code's)."""

    hidden_size: int = 64
    embedding_size: int = 8
    center_tanh_constant: float = 1.5
    edit_tanh_constant: float = 0.6


@dataclass(frozen=True)
class Decision:
    """One sample of the joint policy: the evoked node (``pi_G``) and ``M`` edits ``(layer, op)`` (``pi_L``)."""

    node: int
    edits: tuple[tuple[int, int], ...]

    def apply(self, center: Architecture) -> Architecture:
        """Eq. (1): ``beta = alpha (+) Delta alpha``, the edits applied in order to a copy of the centre."""
        beta = list(center)
        for layer, op in self.edits:
            beta[layer] = op
        return tuple(beta)

    def to_plain(self) -> list:
        return [self.node, [list(e) for e in self.edits]]

    @classmethod
    def from_plain(cls, data: Sequence) -> Decision:
        return cls(int(data[0]), tuple((int(l), int(o)) for l, o in data[1]))


# ----------------------------------------------------------------------------------------------
# The graph as tensors
# ----------------------------------------------------------------------------------------------
@dataclass
class GraphTensors:
    """A subspace graph as the controller reads it.

    ``ops``: [K, L] flat operation ids (slot offset + op index); ``scores``: [K, 1] the centres' rewards,
    standardised over the graph; ``mask``: [P, 1] 1 where the ordered pair ``p = (i, j)`` is an edge
    ``i -> j`` (weaker to better), 0 otherwise; ``pairs``: the index tensors of the ordered pairs.
    """

    ops: Tensor
    scores: Tensor
    mask: Tensor
    pairs: Pairs

    @classmethod
    def build(cls, graph: SubspaceGraph, offsets: np.ndarray) -> GraphTensors:
        scores = np.asarray(graph.scores, dtype=np.float64)
        spread = scores.std()
        scores = (scores - scores.mean()) / spread if spread > 0 else np.zeros_like(scores)
        pairs = ordered_pairs(len(graph))
        mask = graph.edge_mask()[pairs.src_np, pairs.dst_np]
        return cls(
            torch.from_numpy(np.asarray(graph.centers, dtype=np.int64) + offsets),
            torch.tensor(scores, dtype=torch.float32).unsqueeze(1),
            torch.from_numpy(mask).unsqueeze(1),
            pairs,
        )


@dataclass(frozen=True)
class Pairs:
    """Ordered pairs ``(i, j)``, ``i != j``, of K nodes: ``src``/``dst``, the index of the reversed pair,
    and the message-passing ``edge_index`` (messages flow from neighbour ``j`` to node ``i``)."""

    src_np: np.ndarray
    dst_np: np.ndarray
    src: Tensor
    dst: Tensor
    reverse: Tensor
    message_index: Tensor


@lru_cache(maxsize=64)
def ordered_pairs(K: int) -> Pairs:
    src, dst = (
        map(np.array, zip(*[(i, j) for i in range(K) for j in range(K) if i != j]))
        if K > 1
        else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    position = {(i, j): p for p, (i, j) in enumerate(zip(src, dst))}
    reverse = np.array([position[(j, i)] for i, j in zip(src, dst)], dtype=np.int64)
    src_t, dst_t = torch.as_tensor(src, dtype=torch.long), torch.as_tensor(dst, dtype=torch.long)
    return Pairs(src, dst, src_t, dst_t, torch.as_tensor(reverse, dtype=torch.long), torch.stack([dst_t, src_t]))


# ----------------------------------------------------------------------------------------------
# Graph encoders
# ----------------------------------------------------------------------------------------------
class EdgeSAGEConv(MessagePassing):
    """One layer of the edge-aware GraphSAGE (ASE-NAS Appendix, after You et al. 2020):

    * Eq. (5): ``n_a = MEAN_{a' in N(a)} relu(P [h_a, e_aa', e_a'a])`` (an absent direction is a zero vector);
    * Eq. (6): ``h_a <- relu(Q [h_a, n_a])``;
    * Eq. (7): ``e_aa' <- relu(W [e_aa', h_a, h_a'])`` for every edge ``a -> a'`` (absent edges stay zero).

    ``update_edges=False`` skips Eq. (7): the last layer's edge features would feed nothing.
    """

    def __init__(self, node_features: int, edge_features: int, out_features: int, update_edges: bool = True):
        super().__init__(aggr="mean")
        self.P = nn.Linear(node_features + 2 * edge_features, out_features)
        self.Q = nn.Linear(node_features + out_features, out_features)
        self.W = nn.Linear(edge_features + 2 * out_features, out_features) if update_edges else None

    def forward(self, h: Tensor, e: Tensor, mask: Tensor, pairs: Pairs) -> tuple[Tensor, Tensor | None]:
        both_directions = torch.cat([e, e[pairs.reverse]], dim=1)
        n = self.propagate(pairs.message_index, x=h, edge_attr=both_directions, size=(len(h), len(h)))
        h = torch.relu(self.Q(torch.cat([h, n], dim=1)))
        if self.W is None:
            return h, None
        return h, torch.relu(self.W(torch.cat([e, h[pairs.src], h[pairs.dst]], dim=1))) * mask

    def message(self, x_i: Tensor, edge_attr: Tensor) -> Tensor:
        return torch.relu(self.P(torch.cat([x_i, edge_attr], dim=1)))


class GraphEncoder(nn.Module):
    """Two ``EdgeSAGEConv`` layers on the subspace graph; the input edge features are ``h_a' - h_a``
    (Appendix), zero in the blocks of the slots where the two centres agree."""

    def __init__(self, in_features: int, hidden_size: int, layers: int = 2):
        super().__init__()
        sizes = [in_features] + [hidden_size] * layers
        self.layers = nn.ModuleList(
            EdgeSAGEConv(a, a, b, update_edges=i < layers - 1) for i, (a, b) in enumerate(zip(sizes, sizes[1:]))
        )

    def forward(self, h: Tensor, graph: GraphTensors) -> Tensor:
        e = edge_features(h, graph)
        for layer in self.layers:
            h, e = layer(h, e, graph.mask, graph.pairs)
        return h


def edge_features(h: Tensor, graph: GraphTensors) -> Tensor:
    """Appendix: ``e_aa' = h_a' - h_a`` for every edge ``a -> a'``; zero for ordered pairs without an edge."""
    return (h[graph.pairs.dst] - h[graph.pairs.src]) * graph.mask


class PointEncoder(nn.Module):
    """Section V-D's "no graph" ablation: each subspace a separate point, two fully connected layers."""

    def __init__(self, in_features: int, hidden_size: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(in_features, hidden_size), nn.Linear(hidden_size, hidden_size)

    def forward(self, h: Tensor, graph: GraphTensors) -> Tensor:
        return torch.relu(self.fc2(torch.relu(self.fc1(h))))


# ----------------------------------------------------------------------------------------------
# The controller
# ----------------------------------------------------------------------------------------------
class ASEController(nn.Module):
    """The joint policy ``pi(alpha, Delta alpha | G) = pi_G(alpha | G) pi_L(Delta alpha | Omega_alpha)``.

    Args:
        space: the (sub)space searched; the edit heads only offer the operations it allows per slot.
        local_distance: M, the number of single-layer edits (Eq. 3's radius).
        hidden_size: the GNN's and the LSTM's width (official code: 64).
        embedding_size: the learnable vector of each operation of each slot; a node's embedding
            ``h_a`` is their concatenation over the slots (Appendix) plus the centre's reward.
        use_graph: the two-layer GNN (True) or the "no graph" ablation's two FC layers (False).
        center_tanh_constant, edit_tanh_constant: logits become ``c * tanh(logits)`` (1.5 and 0.6).
        seed: seeds the U(-0.1, 0.1) initialisation.
    """

    def __init__(
        self,
        space: SearchSpace,
        local_distance: int,
        hidden_size: int = 64,
        embedding_size: int = 8,
        use_graph: bool = True,
        center_tanh_constant: float = 1.5,
        edit_tanh_constant: float = 0.6,
        seed: int = 0,
    ):
        super().__init__()
        sizes = [len(s.ops) for s in space.slots]
        self.local_distance = local_distance
        self.center_tanh_constant, self.edit_tanh_constant = center_tanh_constant, edit_tanh_constant
        self.offsets = np.cumsum([0] + sizes[:-1]).astype(np.int64)
        self._offsets_t = torch.from_numpy(self.offsets)
        allowed = torch.zeros(len(sizes), max(sizes), dtype=torch.bool)
        for i, slot in enumerate(space.slots):
            allowed[i, list(slot.allowed)] = True
        self.register_buffer("allowed", allowed, persistent=False)

        self.op_vectors = nn.Embedding(sum(sizes), embedding_size)  # h_a's per-item learnable vectors
        in_features = len(sizes) * embedding_size + 1
        self.encoder = GraphEncoder(in_features, hidden_size) if use_graph else PointEncoder(in_features, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size)
        self.attn_node = nn.Linear(hidden_size, hidden_size, bias=False)
        self.attn_query = nn.Linear(hidden_size, hidden_size, bias=False)
        self.attn_v = nn.Linear(hidden_size, 1, bias=False)
        self.layer_head = nn.Linear(hidden_size, len(sizes))
        self.op_head = nn.Linear(hidden_size, max(sizes))
        self.layer_inputs = nn.Embedding(len(sizes), hidden_size)
        self.op_inputs = nn.Embedding(sum(sizes), hidden_size)
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-INIT_RANGE, INIT_RANGE, generator=generator)

    # --- the pieces ----------------------------------------------------------------------------
    def encode(self, graph: GraphTensors) -> Tensor:
        """Node features of the subspace graph, [K, hidden]."""
        return self.encoder(torch.cat([self.node_embeddings(graph), graph.scores], dim=1), graph)

    def node_embeddings(self, graph: GraphTensors) -> Tensor:
        """``h_a`` of the Appendix: the concatenated operation vectors of each centre (without the reward)."""
        return self.op_vectors(graph.ops).flatten(1)

    def _center_logits(self, nodes: Tensor, query: Tensor) -> Tensor:
        logits = self.attn_v(torch.tanh(self.attn_node(nodes) + self.attn_query(query))).squeeze(-1)
        return self.center_tanh_constant * torch.tanh(logits)

    def _layer_logits(self, hidden: Tensor) -> Tensor:
        return self.edit_tanh_constant * torch.tanh(self.layer_head(hidden))

    def _op_logits(self, hidden: Tensor, layers: Tensor) -> Tensor:
        logits = self.edit_tanh_constant * torch.tanh(self.op_head(hidden))
        return logits.masked_fill(~self.allowed[layers], float("-inf"))

    def _op_input(self, layer: int, op: int) -> Tensor:
        return self.op_inputs.weight[int(self.offsets[layer]) + op].unsqueeze(0)

    # --- the policy ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, graph: GraphTensors, rng: np.random.Generator) -> Decision:
        """Sample a subspace (``pi_G``) then ``M`` edits (``pi_L``), drawing with ``rng``."""
        nodes = self.encode(graph)
        weights = (self.lstm.weight_ih_l0, self.lstm.weight_hh_l0, self.lstm.bias_ih_l0, self.lstm.bias_hh_l0)
        state = (nodes.new_zeros(1, nodes.shape[1]), nodes.new_zeros(1, nodes.shape[1]))

        def step(x: Tensor, logits_of) -> int:
            nonlocal state
            state = torch.lstm_cell(x, state, *weights)
            return _draw(torch.softmax(logits_of(state[0]), dim=-1), rng)

        node = step(nodes.mean(0, keepdim=True), lambda q: self._center_logits(nodes, q))
        x, edits = nodes[node : node + 1], []
        for _ in range(self.local_distance):
            layer = step(x, self._layer_logits)
            op = step(
                self.layer_inputs.weight[layer : layer + 1],
                lambda q, layer=layer: self._op_logits(q, torch.tensor([layer])),
            )
            edits.append((layer, op))
            x = self._op_input(layer, op)
        return Decision(node, tuple(edits))

    def log_prob(self, graph: GraphTensors, decision: Decision) -> tuple[Tensor, Tensor]:
        """``log pi`` of a decision and the policy's entropy along it (sums over the 1 + 2M choices), with
        gradients: the teacher-forced sequence runs through the LSTM in one call."""
        nodes = self.encode(graph)
        layers = torch.tensor([l for l, _ in decision.edits], dtype=torch.long)
        ops = torch.tensor([o for _, o in decision.edits], dtype=torch.long)
        # Inputs: mean node, chosen node, then layer l_1, op o_1, ..., layer l_M (the last op feeds nothing).
        edit_inputs = torch.stack([self.layer_inputs(layers), self.op_inputs(ops + self._offsets_t[layers])], 1)
        sequence = torch.cat(
            [nodes.mean(0, keepdim=True), nodes[decision.node : decision.node + 1], edit_inputs.flatten(0, 1)[:-1]]
        )
        hidden, _ = self.lstm(sequence.unsqueeze(1))
        hidden = hidden.squeeze(1)
        logp_c, ent_c = _choice(self._center_logits(nodes, hidden[0:1]).unsqueeze(0), torch.tensor([decision.node]))
        logp_l, ent_l = _choice(self._layer_logits(hidden[1::2]), layers)
        logp_o, ent_o = _choice(self._op_logits(hidden[2::2], layers), ops)
        return logp_c + logp_l + logp_o, ent_c + ent_l + ent_o


def _choice(logits: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
    """Summed log-probabilities of ``chosen`` under each row's softmax, and the summed entropies."""
    logp = torch.log_softmax(logits, dim=-1)
    # Operations a slot does not offer have logp = -inf; zero them before the product, or 0 * inf
    # would turn the entropy's gradient into NaN.
    safe = torch.where(torch.isfinite(logp), logp, torch.zeros_like(logp))
    entropy = -(logp.exp() * safe).sum()
    return logp.gather(1, chosen.unsqueeze(1)).sum(), entropy


def _draw(probs: Tensor, rng: np.random.Generator) -> int:
    """Inverse-CDF draw from one row of probabilities with the searcher's numpy generator."""
    cdf = np.cumsum(probs.reshape(-1).double().numpy())
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))
