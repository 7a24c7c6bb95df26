"""error_memory: responsive error compensation in the style of ReLoop2 (Zhu et al. 2023).

The slow model is not touched when a window arrives. Instead, a bounded memory stores, for
rows the slow model gets wrong, the error (one-hot target minus predicted probabilities)
under a key: the slow model's hidden features, centred and normalised. At serving time a
prediction is corrected by the errors stored under keys similar to its own:

    p(x) = softmax(slow(x)) + weight * sum_i k(x, i) e_i / max(sum_i k(x, i), floor)

Retrieval (`retrieval: lsh`, the default) is locality-sensitive hashing, as in ReLoop2:
`tables` SimHash tables of `hash_bits` random hyperplanes each. An entry and a query collide
in a table with probability (1 - angle/pi)^hash_bits, so the errors summed over the query's
buckets are a kernel-weighted sum of the stored errors with that kernel, and their count
the kernel mass; the correction is their ratio, shrunk when the mass is under
`tables * min_support`. A query costs one small matrix product and `tables` lookups,
whatever the memory holds: about 17% of a forward pass of the slow model on 256 rows, where
the exact search over 6,000 keys costs about 3 forward passes
(benchmarks/adaptation_latency.py). `retrieval: exact` keeps that exact search: the
`neighbours` nearest keys by cosine, weights exp((cos - 1) / temperature) scaled to sum to
at most 1. It is the more accurate of the two on mnist1d-classinc (ACC 0.58 vs 0.50,
README) and the better choice when serving cost does not matter.

The memory is a ring: when full, the oldest entries leave, and the bucket totals are rebuilt
from the ring after each window. Every `consolidate_every` windows (0 = never) the slow
model is retrained on the rows the memory holds and the memory is cleared, since its errors
describe the old slow model.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from components.data.loading import Window
from components.methods.base import Method, MethodConfig, Knob, log_range
from components.models import SlowNet


class ErrorMemoryConfig(MethodConfig):
    capacity: int = Field(6000, ge=1, description="entries the memory holds (oldest out)")
    retrieval: Literal["lsh", "exact"] = Field("lsh", description="lsh: hashed, constant cost; exact: k nearest keys")
    hash_bits: int = Field(14, ge=1, le=16, description="lsh: hyperplanes per table; more = a narrower kernel")
    tables: int = Field(8, ge=1, description="lsh: hash tables; more = a smoother estimate")
    min_support: float = Field(3.0, gt=0, description="lsh: colliding entries per table below which a correction shrinks")
    hash_seed: int = Field(0, description="lsh: seed of the random hyperplanes")
    neighbours: int = Field(10, ge=1, description="exact: neighbours per query")
    temperature: float = Field(0.05, gt=0, description="exact: kernel width over cosine similarity")
    weight: float = Field(1.0, ge=0, description="scale of the correction")
    only_mistakes: bool = Field(True, description="store only rows the slow model gets wrong")
    consolidate_every: int = Field(0, ge=0, description="retrain the slow model on the memory every n windows")


class ErrorMemory(nn.Module):
    """Ring buffer of (bucket codes or keys, error) plus per-bucket error totals: what serving
    needs. The training rows behind the entries live beside it in the method (`RowStore`),
    so the served model carries no training data."""

    def __init__(
        self, capacity: int, key_dim: int, num_classes: int, device: torch.device,
        hash_bits: int = 14, tables: int = 8, seed: int = 0, exact: bool = False,
    ) -> None:
        super().__init__()
        if exact:  # the keys themselves, for the exact search; no hash tables
            hash_bits = tables = 0
        self.capacity, self.hash_bits, self.tables, self.exact = capacity, hash_bits, tables, exact
        self.register_buffer("keys", torch.zeros(capacity if exact else 0, key_dim, device=device))
        planes = torch.randn(key_dim, tables * hash_bits, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("planes", planes.to(device))
        # Bucket row of table t from its `bits` projections p_b, laid out [tables * bits, rows]:
        #   t * 2^bits + sum_b 2^b [p_b > 0]  =  sum_b 2^(b-1) sign(p_b) + t * 2^bits + (2^bits - 1) / 2
        # one batched product per query (sign in {-1, 1}; one op fewer than casting p > 0;
        # every value is a multiple of 1/2 below 2^24, so exact in float32). Constants derived
        # from the sizes: not saved with the model.
        half_place = (2.0 ** torch.arange(hash_bits) / 2).expand(tables, 1, hash_bits).contiguous()
        self.register_buffer("half_place", half_place.to(device), persistent=False)
        offsets = torch.arange(tables) * 2.0**hash_bits + (2.0**hash_bits - 1) / 2
        self.register_buffer("offsets", offsets.view(tables, 1, 1).to(device), persistent=False)
        self.register_buffer("codes", torch.zeros(capacity, tables, dtype=torch.long, device=device))
        self.register_buffer("errors", torch.zeros(capacity, num_classes, device=device))
        self.register_buffer("center", torch.zeros(key_dim, device=device))
        self.register_buffer("bias", torch.zeros(tables * hash_bits, device=device))  # -center @ planes
        # per bucket: the stored errors' sum and, in the last column, how many entries
        self.register_buffer("totals", torch.zeros(tables * 2**hash_bits, num_classes + 1, device=device))
        self.size = 0
        self.next = 0

    def hash(self, features: torch.Tensor) -> torch.Tensor:
        """[tables, n] bucket rows. Keys are features centred on the pretrain split's mean:
        ReLU features all share the positive orthant, so uncentred they would all hash
        alike. The sign of (f - center) . plane does not depend on the key's length, so the
        centring is a bias and no normalisation is needed (fewer small ops when serving)."""
        return self.codes_of(torch.addmm(self.bias.unsqueeze(1), self.planes.T, features.T))

    def codes_of(self, projected: torch.Tensor) -> torch.Tensor:
        """[tables, n] bucket rows from the projections (f - center) . planes, given as
        [tables * bits, n]. A projection of exactly 0 (sign 0) lands in another valid bucket
        of the same table, the same one when stored and when served."""
        n = projected.shape[1]
        signs = projected.sign().view(self.tables, self.hash_bits, n)
        return torch.baddbmm(self.offsets, self.half_place, signs).view(self.tables, n).long()

    def lookup(self, codes: torch.Tensor, min_support: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed errors and support of [tables, n] bucket rows: a gather and a sum over
        tables, which reads the rows in the layout the batched product gives them
        (embedding_bag wants each query's rows together: one more copy)."""
        summed = F.embedding(codes, self.totals).sum(0)
        return summed[:, :-1], summed[:, -1:].clamp_min(self.tables * min_support)

    def set_center(self, center: torch.Tensor) -> None:
        self.center.copy_(center)
        self.bias.copy_(-(self.center @ self.planes))

    def add(self, features: torch.Tensor, errors: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Store entries; returns (their ring slots, how many leading entries were dropped
        because only the newest `capacity` fit)."""
        dropped = max(0, len(features) - self.capacity)
        features, errors = features[dropped:], errors[dropped:]
        slots = (self.next + torch.arange(len(features), device=features.device)) % self.capacity
        if self.exact:
            self.keys[slots] = self.key(features)
        else:
            self.codes[slots] = self.hash(features).T
        self.errors[slots] = errors
        self.next = int((self.next + len(features)) % self.capacity)
        self.size = min(self.capacity, self.size + len(features))
        self.rebuild()
        return slots, dropped

    def key(self, features: torch.Tensor) -> torch.Tensor:
        """exact: centred features on the unit sphere, compared by cosine similarity."""
        return F.normalize(features - self.center, dim=1)

    def rebuild(self) -> None:
        """Bucket totals from the ring's current entries (exact, no drift from add/remove)."""
        self.totals.zero_()
        n = self.size
        if n and not self.exact:
            rows = torch.cat([self.errors[:n], torch.ones(n, 1, device=self.errors.device)], dim=1)
            self.totals.index_add_(0, self.codes[:n].reshape(-1), rows.repeat_interleave(self.tables, dim=0))

    def clear(self) -> None:
        self.size = 0
        self.next = 0
        self.rebuild()

    def correction(
        self, features: torch.Tensor, min_support: float = 3.0, neighbours: int = 10, temperature: float = 0.05
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(numerator, denominator) of the correction, per row; the caller fuses the division.

        lsh: the summed errors in the row's buckets over their support (at least
        `tables * min_support`, so a correction backed by few entries shrinks). exact: the
        kernel-weighted errors of the `neighbours` nearest keys, the weights scaled to sum to
        at most 1."""
        if self.exact:
            return self.exact_correction(features, neighbours, temperature), features.new_ones(len(features), 1)
        return self.lookup(self.hash(features), min_support)

    def exact_correction(self, features: torch.Tensor, neighbours: int, temperature: float) -> torch.Tensor:
        if self.size == 0:
            return features.new_zeros(len(features), self.errors.shape[1])
        similarity = self.key(features) @ self.keys[: self.size].T
        top, index = similarity.topk(min(neighbours, self.size), dim=1)
        kernel = torch.exp((top - 1.0) / temperature)  # a far neighbour contributes nothing
        weights = kernel / kernel.sum(1, keepdim=True).clamp_min(1.0)
        return (weights.unsqueeze(2) * self.errors[index]).sum(1)


class RowStore(nn.Module):
    """The training rows behind the memory's entries, slot for slot: consolidation retrains
    on them; serving never reads them."""

    def __init__(self, capacity: int, in_dim: int, device: torch.device) -> None:
        super().__init__()
        self.register_buffer("x", torch.zeros(capacity, in_dim, device=device))
        self.register_buffer("y", torch.zeros(capacity, dtype=torch.long, device=device))


class CorrectedModel(nn.Module):
    """The served model: slow model plus error correction; outputs log-probabilities."""

    def __init__(self, slow: SlowNet, memory: ErrorMemory, config: ErrorMemoryConfig) -> None:
        super().__init__()
        self.slow, self.memory, self.config = slow, memory, config
        self._fused: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def fused_projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The head and the hash hyperplanes as one matrix, so that serving does one matrix
        product for logits and hash projections; rebuilt when either changes. Transposed
        (one row per output): the softmax then runs over the first dimension of a
        [classes, rows] block, which on CPU is several times faster than over 10 columns."""
        head, memory = self.slow.head, self.memory
        version = (id(head.weight), head.weight._version, head.bias._version, memory.bias._version)
        if self._fused is None or self._fused[0] != version:
            weight = torch.cat([head.weight.detach(), memory.planes.T]).contiguous()
            bias = torch.cat([head.bias.detach(), memory.bias]).unsqueeze(1)
            self._fused = (version, weight, bias)
        return self._fused[1], self._fused[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.slow.features(x)
        c = self.config
        if self.memory.exact:
            probs = F.softmax(self.slow.head(features), dim=1)
            errors, support = self.memory.correction(features, c.min_support, c.neighbours, c.temperature)
        else:
            weight, bias = self.fused_projection()
            projected = torch.addmm(bias, weight, features.T)  # [classes + planes, rows]
            classes = self.slow.head.out_features
            probs = F.softmax(projected[:classes], dim=0).T
            errors, support = self.memory.lookup(self.memory.codes_of(projected[classes:]), c.min_support)
        corrected = torch.addcdiv(probs, errors, support, value=c.weight)
        return corrected.clamp_min_(1e-6).log_().contiguous()


class ErrorMemoryMethod(Method):
    name = "error_memory"
    search_space = {"weight": log_range(0.1, 4.0), "min_support": log_range(0.5, 10.0), "hash_bits": Knob(low=8, high=16, integer=True)}
    requires = ("features", "head")
    Config = ErrorMemoryConfig

    @classmethod
    def used_config(cls, config: MethodConfig) -> dict[str, Any]:
        """Without consolidation no gradient step is taken: the training knobs are unused."""
        used = super().used_config(config)
        if not config.consolidate_every:  # type: ignore[attr-defined]
            for knob in ("epochs", "lr", "batch_size", "masked_loss"):
                used.pop(knob, None)
        return used

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        c, stream = self.config, self.context.stream
        self.memory = ErrorMemory(
            c.capacity, self.slow.head.in_features, stream.num_classes, self.context.device,
            c.hash_bits, c.tables, c.hash_seed, exact=c.retrieval == "exact",
        )
        self.rows = RowStore(c.capacity, stream.manifest.num_features, self.context.device)

    @torch.no_grad()
    def store_errors(self, window: Window) -> int:
        """Store the errors of the window's rows; no gradient step. Returns rows stored."""
        self.slow.eval()
        features = torch.cat([self.slow.features(chunk) for chunk in window.x_train.split(2048)])
        probs = F.softmax(self.slow.head(features), dim=1)
        target = F.one_hot(window.y_train, probs.shape[1]).float()
        keep = probs.argmax(1) != window.y_train if self.config.only_mistakes else torch.ones_like(window.y_train, dtype=torch.bool)
        if not self.memory.center.any():  # centre on the slow model's own data, once
            base = self.context.stream.window(0).x_train
            self.memory.set_center(torch.cat([self.slow.features(c) for c in base.split(2048)]).mean(0))
        slots, dropped = self.memory.add(features[keep], (target - probs)[keep])
        self.rows.x[slots], self.rows.y[slots] = window.x_train[keep][dropped:], window.y_train[keep][dropped:]
        return int(keep.sum())

    def absorb(self, window: Window) -> dict[str, list[float]]:
        self.count_samples(self.store_errors(window))
        losses: dict[str, list[float]] = {}
        every = self.config.consolidate_every
        if every and (len(self.windows_learned) + 1) % every == 0 and self.memory.size:  # + this window
            n = self.memory.size
            losses["consolidate"] = self.fit(self.slow, self.rows.x[:n].clone(), self.rows.y[:n].clone())
            self.memory.clear()
        return losses

    def fast_state_bytes(self) -> int:
        m = self.memory
        per_entry = sum(t[0].numel() * t.element_size() for t in (m.keys if m.exact else m.codes, m.errors, self.rows.x, self.rows.y))
        tables = sum(t.numel() * t.element_size() for t in (m.totals, m.planes))
        return m.size * per_entry + tables

    def predictor(self) -> nn.Module:
        return CorrectedModel(self.slow, self.memory, self.config)

    def state_dict(self) -> dict[str, Any]:
        n = self.memory.size
        m = self.memory
        return super().state_dict() | {
            "memory": {"keys": m.keys[:n], "codes": m.codes[:n], "errors": m.errors[:n], "x": self.rows.x[:n], "y": self.rows.y[:n], "next": m.next,
                       "center": m.center, "planes": m.planes}
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state["memory"]
        n = len(saved["y"])
        for name in ("keys", "codes", "errors"):
            getattr(self.memory, name)[:n] = saved[name].to(self.context.device)
        for name in ("x", "y"):
            getattr(self.rows, name)[:n] = saved[name].to(self.context.device)
        self.memory.planes.copy_(saved["planes"])
        self.memory.set_center(saved["center"])
        self.memory.size, self.memory.next = n, int(saved["next"])
        self.memory.rebuild()
