"""The gate plot of ``nervana-lstm inspect``: the input, then each gate and the state over time.

One panel per row, sharing the time axis::

    input        the sequence (adding: the values, and the two markers in red)
    gates        LSTM: forget, input, output (DG-LSTM above layer 0: and depth);
                 GRU: update, reset. Each in [0, 1]
    candidate    LSTM g_t, GRU n_t, in [-1, 1]
    state        LSTM / DG-LSTM: the cell c_t, each unit divided by its largest |c_t|
                 (cells differ in size by orders); GRU and RNN: h_t

Each shown unit keeps its colour in every panel; the marked steps (adding's
markers, copy's delimiter) are drawn across all panels, so a unit that stores
a marked value shows its input gate opening at the marker, its forget gate
staying near 1, and its cell holding the value until the end.
"""

from __future__ import annotations

from pathlib import Path

from nervana_lstm.atomic import atomic_path
from nervana_lstm.lesson.inspect import Inspection
from nervana_lstm.lesson.trace import GATE_NAMES

__all__ = ["panels", "plot_gates"]

_LABELS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "dglstm": "DG-LSTM"}
#: gate symbols in the order they are drawn
_ORDER = ("f", "i", "o", "d", "z", "r")


def panels(ins: Inspection) -> list[tuple[str, str | None]]:
    """``(symbol, title)`` of each panel below the input; ``"c"``/``"h"`` are the state."""
    lt = ins.trace.layer(ins.layer)
    rows: list[tuple[str, str | None]] = [
        (s, f"{GATE_NAMES[s]} {s}_t") for s in _ORDER if s in lt.gates
    ]
    for cand in ("g", "n"):
        if cand in lt.gates:
            rows.append((cand, f"candidate {cand}_t"))
    rows.append(("c", "cell state c_t") if lt.c is not None else ("h", "hidden state h_t"))
    return rows


def _draw_input(ax, ins: Inspection) -> None:  # type: ignore[no-untyped-def]
    x, name = ins.x, ins.config.task.name
    steps = range(int(x.shape[0]))
    if x.is_floating_point():
        if name == "adding":
            ax.bar(steps, x[:, 0].tolist(), color="0.7", width=1.0, label="value")
            for t in ins.markers:
                ax.bar([t], [float(x[t, 0])], color="red", width=1.0)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("input")
            ax.text(0.995, 0.92, "red: marked values", transform=ax.transAxes, ha="right",
                    va="top", fontsize=7, color="red")  # fmt: skip
        else:
            for f in range(min(int(x.shape[1]), 8)):
                ax.plot(steps, x[:, f].tolist(), lw=1, label=f"feature {f}")
            ax.set_ylabel("input")
        return
    ax.step(steps, x.tolist(), where="mid", color="0.4", lw=1)
    ax.set_ylabel("token id")
    text = ins.input_text
    if text is not None and len(text) <= 160:
        for t, ch in enumerate(text):
            shown = {"\n": "⏎", " ": "␣", "\t": "⇥"}.get(ch, ch)
            ax.annotate(shown, (t, float(x[t])), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=6)  # fmt: skip


def plot_gates(ins: Inspection, path: Path) -> None:
    """Draw ``ins`` into the PNG ``path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lt = ins.trace.layer(ins.layer)
    rows = panels(ins)
    fig, axes = plt.subplots(
        len(rows) + 1, 1, figsize=(10, 1.55 * (len(rows) + 1) + 0.9), dpi=110, sharex=True
    )
    _draw_input(axes[0], ins)
    for ax, (symbol, title) in zip(axes[1:], rows, strict=True):
        values = lt.gates.get(symbol) if symbol not in ("c", "h") else getattr(lt, symbol)
        assert values is not None
        scaled = symbol == "c"  # cells differ in size by orders: each drawn to its own scale
        for n, j in enumerate(ins.units):
            v = values[:, j]
            label = f"unit {j}"
            if scaled:
                top = float(v.abs().max()) or 1.0
                v, label = v / top, f"unit {j}: / {top:.3g}"
            ax.plot(v.tolist(), lw=1.3, color=f"C{n}", label=label)
        if scaled:
            ax.set_ylim(-1.1, 1.1)
            ax.legend(fontsize=7, ncol=len(ins.units), loc="best", framealpha=0.8)
            title = f"{title}, each unit divided by its largest |c_t|"
        if symbol in _ORDER:
            ax.set_ylim(-0.05, 1.05)
        elif symbol in ("g", "n"):
            ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(symbol + "_t")
        ax.set_title(title, fontsize=8, loc="left", pad=2)
    for ax in axes:
        for t in ins.markers:
            ax.axvline(t, color="red", ls=":", lw=0.9)
        ax.grid(alpha=0.25)
    axes[1].legend(fontsize=7, ncol=len(ins.units), loc="lower right")
    axes[-1].set_xlabel("step t")
    name, kind = ins.config.task.name, _LABELS[ins.trace.kind]
    title = (
        f"{name}: {kind}, H={ins.config.model.hidden_size}, layer {ins.layer}, "
        f"{ins.step} training steps; {ins.about}"
    )
    if name == "adding" and ins.target is not None:
        title += f"\ntarget {float(ins.target[0]):.3f}, prediction {float(ins.trace.output[0]):.3f}"
    fig.suptitle(title, fontsize=9)
    fig.text(0.01, 0.005, f"units shown: {ins.unit_rule}", fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
