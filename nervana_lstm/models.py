"""Task heads on top of a recurrent stack from :func:`nervana_lstm.cells.make_rnn`.

One model class serves every task; what differs is read from the task's
:class:`~nervana_lstm.data.base.TaskSpec`::

    tokens input     e_t = Embedding(x_t)                       # (T, N, E)
    features input   e_t = x_t                                  # (T, N, F)
    recurrence       o_t, state = RNN(e_t, state, lengths)      # (T, N, D*H)
    *_last targets   z = W o_{last} + b                         # (N, O)
    classify_steps   z_t = W o_t + b                            # (T, N, O)

``o_{last}`` is each sequence's output at its own last valid step (from
``lengths``); for a bidirectional stack the backward half is taken at step 0,
where the backward direction has read the whole sequence.
"""

from __future__ import annotations

import torch
from torch import nn

from nervana_lstm.config import ModelConfig
from nervana_lstm.data.base import TaskSpec

__all__ = ["SequenceModel", "build_model", "init_forget_bias"]


class SequenceModel(nn.Module):
    """Embedding (token tasks) -> recurrent stack -> linear head.

    Inputs: ``x`` (T, N, F) float or (T, N) int64, optional ``state`` (the stack's
    state layout), optional ``lengths`` (N,).
    Outputs: ``(logits, state)`` with logits (N, O) for ``*_last`` targets and
    (T, N, O) for ``classify_steps``.
    """

    def __init__(self, spec: TaskSpec, cfg: ModelConfig, impl: str) -> None:
        super().__init__()
        from nervana_lstm.cells import make_rnn

        self.spec = spec
        self.per_step = spec.target == "classify_steps"
        if spec.input_kind == "tokens":
            self.embed: nn.Module | None = nn.Embedding(spec.input_size, cfg.embedding_dim)
            rnn_input = cfg.embedding_dim
        else:
            self.embed = None
            rnn_input = spec.input_size
        self.rnn = make_rnn(
            cfg.kind,
            impl,
            rnn_input,
            cfg.hidden_size,
            cfg.num_layers,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout,
        )
        self.hidden_size = cfg.hidden_size
        self.directions = 2 if cfg.bidirectional else 1
        self.head = nn.Linear(self.directions * cfg.hidden_size, spec.output_size)
        if cfg.forget_bias is not None:
            init_forget_bias(self.rnn, cfg.forget_bias)

    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        inputs = self.embed(x) if self.embed is not None else x  # (T, N, E) or (T, N, F)
        out, state = self.rnn(inputs, state, lengths)  # (T, N, D*H)
        if self.per_step:
            return self.head(out), state  # (T, N, O)
        return self.head(self._last_output(out, lengths)), state  # (N, O)

    def _last_output(self, out: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        steps, batch = out.shape[0], out.shape[1]
        if lengths is None:
            last = out[steps - 1]  # (N, D*H)
        else:
            index = (lengths.to(out.device).long() - 1).clamp(min=0)  # (N,)
            last = out[index, torch.arange(batch, device=out.device)]  # (N, D*H)
        if self.directions == 1:
            return last
        # the backward direction has seen the whole sequence when it reaches step 0
        h = self.hidden_size
        return torch.cat([last[:, :h], out[0, :, h:]], dim=1)  # (N, 2H)


def init_forget_bias(rnn: nn.Module, value: float) -> None:
    """Set the forget-gate bias of every LSTM-style layer to ``value``.

    The gate order is torch's (i, f, g, o), so the forget gate is rows H..2H of
    ``bias_ih_l{k}``; ``bias_hh_l{k}`` gets zero there so the sum is ``value``.
    A bias of 1 keeps the cell state open early in training, which long-lag tasks
    such as the adding problem at T=100 need.
    """
    h = rnn.hidden_size
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("bias_ih_l"):
                param[h : 2 * h].fill_(value)
            elif leaf.startswith("bias_hh_l"):
                param[h : 2 * h].zero_()


def build_model(spec: TaskSpec, cfg: ModelConfig, impl: str) -> SequenceModel:
    """A fresh model for ``spec``; ``impl`` is ``"fused"`` or ``"reference"``."""
    return SequenceModel(spec, cfg, impl)
