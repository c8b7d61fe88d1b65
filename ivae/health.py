"""Is a finished run probably good? Signals a user has without the true factors.

A run can end in a poor optimum or before it has converged and still report a steady loss
(docs/experiments.md, "Restarts and schedule"). Training therefore records, every epoch,
``val_score`` (the validation objective by which restarts are chosen, ``Model.selection_score``)
and ``val_code_change`` (1 - MCC between this epoch's validation codes and the previous
epoch's: how far the factors still move), and ``assess`` turns the history into plain
sentences. Every threshold is a constant here, with the measurement it comes from.
"""

from __future__ import annotations

import math

# Codes that still change by more than this per epoch over the last epochs have not settled.
# Measured on the toy (docs/experiments.md, "Restarts and schedule"): runs whose MCC had
# settled changed by 0.0009-0.0014 per epoch over their last 3 epochs; a run still gaining
# 0.075 MCC in its last 5 epochs by 0.0030, and square runs still gaining by 0.02-0.05.
MOVING = 0.0025
LAST = 3  # epochs averaged at the end
OVERFIT = 0.05  # the validation score fell from its best by more than this share of its range
# A density ratio below this share of log B: the codes say next to nothing of the query. The
# share is the data's as much as the run's: settled runs measured 3.6-5.8% on the square toy
# (variance-only queries say little), ~18% on the noisy toy and ~72% on kitchen photos.
EMPTY = 0.01


def assess(history: list[dict], ratio_ceiling: float | None) -> dict:
    """The health report of a run: its figures and a list of warnings (sentences).

    ``history``: history.csv's rows; ``ratio_ceiling``: log B of the validation batches for a
    model with a density ratio (None otherwise)."""
    report: dict = {"warnings": []}
    warn = report["warnings"].append
    scores = [row["val_score"] for row in history if _finite(row.get("val_score"))]
    if scores:
        best = max(range(len(scores)), key=scores.__getitem__)
        report["val_score"], report["best_epoch"] = scores[-1], best + 1
        spread = max(scores) - min(scores)
        if best < len(scores) - 1 and spread > 0 and max(scores) - scores[-1] > OVERFIT * spread:
            warn(
                f"The validation objective peaked at epoch {best + 1} and then fell "
                f"({max(scores):.4g} to {scores[-1]:.4g}): the model overfits the training "
                "split; train fewer epochs or on more data."
            )
    changes = [row["val_code_change"] for row in history if _finite(row.get("val_code_change"))]
    if changes:
        moving = sum(changes[-LAST:]) / len(changes[-LAST:])
        report["code_change"] = moving
        if len(changes) >= LAST and moving > MOVING:
            warn(
                f"The factors were still moving when training stopped (the validation codes "
                f"changed by {moving:.3f} per epoch over the last {LAST} epochs; settled runs "
                f"change by less than {MOVING}): the run has probably not converged. Train "
                "longer (--epochs) and check that the factors settle."
            )
    ratio = history[-1].get("val_ratio") if history else None
    if ratio_ceiling and _finite(ratio):
        report["val_ratio"], report["ratio_ceiling"] = ratio, ratio_ceiling
        report["ratio_share"] = ratio / ratio_ceiling
        if ratio / ratio_ceiling < EMPTY:
            warn(
                f"The codes carry almost nothing about the conditioning input (validation "
                f"density ratio {ratio:.3g} of a possible log B = {ratio_ceiling:.3g}): check "
                "that the pairs are aligned, or train longer."
            )
    report["status"] = "poor" if report["warnings"] else "ok"
    return report


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def summary(report: dict, restarts: list[dict], rollbacks: list[dict] = ()) -> str:
    """The health report's figures in one sentence (the model report shows it), with the
    restarts tried and the roll-backs made (metrics.json's ``restarts``, ``rollbacks``)."""
    parts = []
    if "val_score" in report:
        parts.append(
            f"validation objective {report['val_score']:.4g} at the end, best at epoch "
            f"{report['best_epoch']}"
        )
    if "ratio_share" in report:
        parts.append(
            f"density ratio {report['val_ratio']:.3g} of a possible "
            f"{report['ratio_ceiling']:.3g} (log B)"
        )
    if "code_change" in report:
        parts.append(f"codes changing by {report['code_change']:.4f} per epoch at the end")
    if len(restarts) > 1:
        chosen = next((r for r in restarts if r.get("chosen")), restarts[0])
        scores = ", ".join(
            "diverged" if r.get("score") is None else f"{r['score']:.4g}" for r in restarts
        )
        parts.append(
            f"{len(restarts)} initialisations tried (validation scores {scores}), "
            f"start {chosen['candidate'] + 1} kept"
        )
    for rollback in rollbacks:
        parts.append(
            f"blew up in epoch {rollback['epoch']} ({rollback['reason']}) and went on from "
            f"epoch {rollback['to_epoch']} at {rollback['lr_scale']:g} of the learning rate"
        )
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "." if text else ""
