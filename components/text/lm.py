"""The slow model of a text stream: a small byte-level language model (vocabulary 256, no
tokenizer). Embedding -> input projection -> GRU -> output projection -> head: the two
projections are Linear layers inside the backbone, where a LoRA adapter can sit (peft does
not adapt a GRU's own weights); about 0.4M parameters at the defaults."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 256
LN2 = math.log(2.0)


class ByteLM(nn.Module):
    def __init__(self, width: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.in_proj = nn.Linear(width, hidden)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.out_proj = nn.Linear(hidden, width)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None,
                memory: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits for the next byte at every position, and the recurrent state after them.
        `memory` (width x hidden), a fast linear map beside `out_proj`, is read with the
        recurrent output as its key (components/text/memory.py)."""
        h, state = self.recurrent(tokens, state)
        return self.read(h, memory), state

    def recurrent(self, tokens: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The GRU's outputs at every position (the memory's keys) and its state after them."""
        return self.rnn(torch.tanh(self.in_proj(self.embed(tokens))), state)

    def one_step(self, tokens: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """The GRU's output at every position from the given state before it (n x hidden):
        one step of the recurrence each, batched over positions, so a gradient through it
        stops at the previous state (`dynamic_eval`'s `backprop: step`). With the states the
        recurrence passed through, it equals `recurrent`'s outputs. The GRU cell's equations
        (torch.nn.GRU's documentation) written out: its fused kernel runs one step at a time."""
        rnn = self.rnn
        reset_i, update_i, new_i = F.linear(torch.tanh(self.in_proj(self.embed(tokens))),
                                            rnn.weight_ih_l0, rnn.bias_ih_l0).chunk(3, dim=-1)
        reset_h, update_h, new_h = F.linear(previous, rnn.weight_hh_l0, rnn.bias_hh_l0).chunk(3, dim=-1)
        reset, update = torch.sigmoid(reset_i + reset_h), torch.sigmoid(update_i + update_h)
        new = torch.tanh(new_i + reset * new_h)
        return (1 - update) * new + update * previous

    def read(self, h: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        pre = self.out_proj(h) if memory is None else self.out_proj(h) + h @ memory.T
        return self.head(torch.tanh(pre))

    def errors(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """At the input of the final tanh, the direction that lowers each next byte's loss
        (-dCE/dpre, n x width) for the recurrent outputs `h` (n x hidden) of one sequence."""
        z = torch.tanh(self.out_proj(h))
        surprise = F.one_hot(targets, VOCAB).to(z.dtype) - torch.softmax(self.head(z), dim=-1)
        return (surprise @ self.head.weight) * (1 - z * z)

    def keys_and_errors(self, tokens: torch.Tensor, targets: torch.Tensor,
                        state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """For one sequence: the recurrent outputs (keys, n x hidden) and their `errors`."""
        h = self.recurrent(tokens.unsqueeze(0), state)[0].squeeze(0)
        return h, self.errors(h, targets)


def as_tokens(data: bytes, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device=device, dtype=torch.long)


def segment_loss(model: nn.Module, context: torch.Tensor, segment: torch.Tensor,
                 state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy (nats per byte) of `segment` given the byte before it (`context`,
    one token) and the recurrent state; and the state after the segment."""
    inputs = torch.cat([context, segment[:-1]]).unsqueeze(0)
    logits, state = model(inputs, state)
    return F.cross_entropy(logits.squeeze(0), segment), state


def pretrain_lm(model: ByteLM, data: bytes, steps: int, batch: int = 32, length: int = 128, lr: float = 3e-3,
                generator: torch.Generator | None = None) -> list[float]:
    """Truncated-BPTT pretraining on random spans of `data` (Adam); the loss per 50 steps."""
    tokens = as_tokens(data)
    if len(tokens) <= length + 1:
        raise ValueError(f"pretraining text has {len(tokens)} bytes; need more than {length + 1}")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, running = [], 0.0
    model.train()
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(tokens) - length - 1, (batch,), generator=generator)
        spans = torch.stack([tokens[s: s + length + 1] for s in starts.tolist()])
        logits, _ = model(spans[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), spans[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running += loss.item()
        if step % 50 == 0:
            losses.append(running / 50)
            running = 0.0
    model.eval()
    return losses
