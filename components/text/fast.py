"""Fast learners that learn while reading, and the prequential protocol that scores them.

Prequential: each segment of a held-out document is scored (bits per byte) by the model as
it stands, and only then may the fast learner learn from it; the fast state never sees what
it is scored on. `static` is the slow model alone, the baseline; `dynamic_eval` (Krause et
al. 2018) takes a gradient step on every segment just read, on all weights, and decays them
back toward the slow weights, so what one document taught fades over the next.

`dynamic_eval` backpropagates through the segment's whole recurrence (`backprop: segment`,
as Krause et al.) or through one step of it (`backprop: step`): each position's loss reaches
every weight through the GRU cell that produced it, from the state the scoring pass left
there. The first runs the GRU's backward one byte at a time (4x a forward on 2 cores); the
second is a few batched matrix products (about 1x), at a small cost in gain (README
"Learning while reading").
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from components.text.lm import LN2, ByteLM, as_tokens, segment_loss


class FastLearner(ABC):
    name: str = ""
    # True: the scoring pass records its graph and `learn` gets the scored loss, so a
    # gradient learner's first step needs no second forward over the same segment.
    reuses_scoring: bool = False

    def __init__(self, slow: nn.Module) -> None:
        self.slow = slow.eval()

    @property
    @abstractmethod
    def model(self) -> nn.Module:
        """What scores the next segment."""

    def begin_document(self) -> None:  # noqa: B027 (optional hook)
        """A new document starts (a learner may reset its fast state here)."""

    def learn(self, context: torch.Tensor, segment: torch.Tensor, state: torch.Tensor | None,  # noqa: B027
              scored: torch.Tensor | None = None) -> None:
        """Learn from a segment that was just scored (the static model learns nothing);
        `scored` is that score's loss with its graph when `reuses_scoring`."""

    def state_bytes(self) -> int:
        return 0


class Static(FastLearner):
    name = "static"

    @property
    def model(self) -> nn.Module:
        return self.slow


class ScoringPass(nn.Module):
    """A byte LM that keeps what its scoring pass computed on the segment it last scored: the
    GRU's outputs and the state it started from (detached). The learner's update that
    follows reads them (`take`) instead of a second pass through the recurrence: the memory's
    keys (`neural_memory`), the states before each byte (`dynamic_eval`, `backprop: step`).
    `read` turns the GRU's outputs into logits (the LM's head, or one that reads a memory)."""

    def __init__(self, lm: ByteLM, read: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.lm, self._read = lm, read
        self._kept: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, after = self.lm.recurrent(tokens, state)
        self._kept = (h.detach(), None if state is None else state.detach())
        return self._read(h), after

    def take(self, length: int, learner: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the GRU's outputs, length x hidden; the state before the segment) of the segment
        just scored, handed over once: a learner learns only from the segment it has just
        scored, and one of another `length` is refused."""
        kept, self._kept = self._kept, None
        if kept is None or kept[0].shape[:2] != (1, length):
            raise RuntimeError(f"{learner} learns only from the segment it has just scored")
        return kept[0].squeeze(0), kept[1]


class DynamicEval(FastLearner):
    """Full-weight test-time SGD on each segment, then `decay` of the way back to the slow
    weights; `reset: document` starts each document from the slow weights; `backprop` as in
    the module docstring (with `step`, later steps on a segment keep the first's states)."""

    name = "dynamic_eval"

    def __init__(self, slow: nn.Module, lr: float = 0.01, decay: float = 0.01, steps: int = 1,
                 reset: str = "window", backprop: Literal["segment", "step"] = "step") -> None:
        super().__init__(slow)
        if backprop not in ("segment", "step"):  # params.yaml is checked by its config; this class is public too
            raise ValueError(f"backprop must be 'segment' or 'step', not {backprop!r}")
        self.lr, self.decay, self.steps, self.reset = lr, decay, steps, reset
        self.reuses_scoring = backprop == "segment"
        self.fast = copy.deepcopy(slow)
        self._anchor = [p.detach().clone() for p in slow.parameters()]
        self._scoring = ScoringPass(self.fast, self.fast.read) if backprop == "step" else None

    @property
    def model(self) -> nn.Module:
        return self._scoring if self._scoring is not None else self.fast

    def begin_document(self) -> None:
        if self.reset == "document":
            with torch.no_grad():
                for p, anchor in zip(self.fast.parameters(), self._anchor):
                    p.copy_(anchor)

    def learn(self, context: torch.Tensor, segment: torch.Tensor, state: torch.Tensor | None,
              scored: torch.Tensor | None = None) -> None:
        previous = None
        if self._scoring is not None:  # the state before each byte: the one before the segment, then the outputs
            h, before = self._scoring.take(len(segment), "dynamic_eval (backprop: step)")
            start = h.new_zeros(1, h.shape[-1]) if before is None else before.reshape(1, -1)
            previous = torch.cat([start, h[:-1]])
        inputs = torch.cat([context, segment[:-1]])
        for step in range(self.steps):
            if previous is not None:
                loss = F.cross_entropy(self.fast.read(self.fast.one_step(inputs, previous)), segment)
            elif step == 0 and scored is not None:
                loss = scored
            else:
                loss = segment_loss(self.fast, context, segment, state)[0]
            grads = torch.autograd.grad(loss, list(self.fast.parameters()))
            with torch.no_grad():
                for p, g, anchor in zip(self.fast.parameters(), grads, self._anchor):
                    p.sub_(self.lr * g)
                    p.add_(self.decay * (anchor - p))

    def state_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.fast.parameters())


@dataclass
class DocumentScore:
    name: str
    bytes: int
    bits: float
    segment_bpb: list[float] = field(default_factory=list)  # by position in the document
    score_seconds: float = 0.0  # scoring every segment
    learn_seconds: float = 0.0  # the fast learner's updates

    @property
    def bpb(self) -> float:
        return self.bits / self.bytes


def prequential(learner: FastLearner, documents: Sequence, segment: int = 128) -> list[DocumentScore]:
    """Every document scored segment by segment, each segment before the learner learns
    from it; the recurrent state carries across segments (detached). The first byte of a
    document is predicted from a 0 byte, as in pretraining's joins."""
    scores = []
    for document in documents:
        learner.begin_document()
        tokens = as_tokens(document.data)
        context, state = torch.zeros(1, dtype=torch.long), None
        score = DocumentScore(document.name, len(tokens), 0.0)
        for start in range(0, len(tokens), segment):
            piece = tokens[start: start + segment]
            began = time.perf_counter()
            with torch.set_grad_enabled(learner.reuses_scoring):
                loss, after = segment_loss(learner.model, context, piece, state)
            bits = loss.item() * len(piece) / LN2
            scored = time.perf_counter()
            score.bits += bits
            score.segment_bpb.append(bits / len(piece))
            if learner.reuses_scoring:
                learner.learn(context, piece, state, scored=loss)
            else:
                learner.learn(context, piece, state)
            score.score_seconds += scored - began
            score.learn_seconds += time.perf_counter() - scored
            context, state = piece[-1:], after.detach()
        scores.append(score)
    return scores


def bits_per_byte(scores: Sequence[DocumentScore]) -> float:
    """Over all bytes of the documents (long documents weigh more)."""
    return sum(s.bits for s in scores) / sum(s.bytes for s in scores)


class TTTLora(FastLearner):
    """A peft LoRA adapter inside the backbone (the input and output projections and the
    head), written while reading by `steps` Adam steps per segment (plain SGD on an adapter
    whose B starts at zero either barely moves or diverges); the slow weights stay frozen.
    `reset: document` starts each document from a fresh adapter (and optimizer), `window`
    keeps both."""

    name = "ttt_lora"
    reuses_scoring = True

    def __init__(self, slow: nn.Module, lr: float = 0.01, rank: int = 8, alpha: float = 16.0, steps: int = 1,
                 reset: str = "document", target_modules: tuple[str, ...] = ("in_proj", "out_proj", "head"),
                 seed: int = 0) -> None:
        from peft import LoraConfig, get_peft_model

        super().__init__(slow)
        self.lr, self.steps, self.reset = lr, steps, reset
        torch.manual_seed(seed)  # the adapters' A matrices
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0)
        self.fast = get_peft_model(copy.deepcopy(slow), config)
        self._fresh = {k: v.detach().clone() for k, v in self._adapter().items()}
        self._optimizer = torch.optim.Adam(self._adapter().values(), lr=lr)

    def _adapter(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.fast.named_parameters() if p.requires_grad}

    @property
    def model(self) -> nn.Module:
        return self.fast

    def begin_document(self) -> None:
        if self.reset == "document":
            with torch.no_grad():
                for name, p in self._adapter().items():
                    p.copy_(self._fresh[name])
            self._optimizer = torch.optim.Adam(self._adapter().values(), lr=self.lr)

    def learn(self, context: torch.Tensor, segment: torch.Tensor, state: torch.Tensor | None,
              scored: torch.Tensor | None = None) -> None:
        for step in range(self.steps):
            loss = scored if step == 0 and scored is not None else segment_loss(self.fast, context, segment, state)[0]
            self._optimizer.zero_grad()
            loss.backward()
            self._optimizer.step()

    def state_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self._adapter().values())
