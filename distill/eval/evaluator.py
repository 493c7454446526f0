"""The Q→A evaluator: one evaluated split (validation or test), its baselines (computed once) and the
student's metrics.

Built once per split; ``evaluate(student)`` runs the student over the split's inputs and returns
``{teacher: {"student": metrics, "identity": ..., "ridge": ..., "ridge_input": ...}}`` (the shape of
eval.json; ``ridge_input``: ridge from what the student reads, the input teacher's question
embedding or the input teachers' concatenated, where that is not the space's own question alone).
"""

from __future__ import annotations

import torch

from distill.eval.qa import answer_mean, evaluate_spaces, fit_ridge, format_table, retrieval_metrics
from distill.targets import Targets, teacher_input


@torch.no_grad()
def predict_all(student, inputs: torch.Tensor, batch_size: int, device) -> dict[str, torch.Tensor]:
    """inputs: (N, ...) student inputs -> {teacher: (N, d) float32 on CPU}, in eval mode, batched."""
    was_training = student.training
    student.eval()
    outs: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(inputs), batch_size):
        for k, v in student(inputs[i : i + batch_size].to(device)).items():
            outs.setdefault(k, []).append(v.float().cpu())
    student.train(was_training)
    return {k: torch.cat(v) for k, v in outs.items()}


class Evaluator:
    """Student metrics on one split, beside the identity and ridge baselines it must beat.

    x: (N, ...) student inputs of the split; split: its targets; train: the training split's
    targets the ridge baseline is fitted on (None: identity baseline only, as in online mode,
    which never holds the whole training split's targets). ``baselines=False`` (data.task=texts):
    the student's rows only. ``centers``: {teacher: (d,)} the training answers' means the centred
    cosine subtracts (default: from ``train``; online mode passes a sample's).
    """

    def __init__(self, x: torch.Tensor, split: Targets, train: Targets | None, ks: tuple[int, ...],
                 ridge_lambda: float, batch_size: int, baselines: bool = True,
                 input_teacher: str | list[str] | None = None, centers: dict[str, torch.Tensor] | None = None):
        self.x, self.split, self.ks, self.batch_size = x, split, tuple(ks), batch_size
        names = list(split.a)
        if centers is None and train is not None:
            centers = {n: answer_mean(train.a[n]) for n in names}
        self.centers = centers or {}
        if not baselines:  # a text task: the "question" is the target itself, a baseline would be 1.0
            self.baselines = {n: {} for n in names}
            return
        self.baselines = evaluate_spaces({n: split.q[n] for n in names}, {n: split.q[n] for n in names}, split.a,
                                         train.q if train is not None else None,
                                         train.a if train is not None else None,
                                         ks=self.ks, ridge_lambda=ridge_lambda, centers=centers)
        # "ridge" reads each teacher's OWN question embedding, which the student may not see; the
        # fair linear rival reads what the student reads: ridge from the input teacher's question
        # embedding, or the input teachers' concatenated ("ridge_input"). Only where that input is
        # not the space's own question alone (there the two are the same map) and only for teacher
        # input (a token student has no such input).
        if train is not None and input_teacher is not None:
            inputs = [input_teacher] if isinstance(input_teacher, str) else list(input_teacher)
            x_train = teacher_input(train.q, inputs).float()
            x_split = teacher_input(split.q, inputs).double()
            for n in names:
                if inputs == [n]:
                    continue
                w, b = fit_ridge(x_train, train.a[n].float(), ridge_lambda)
                pred = (x_split @ w + b).float()
                self.baselines[n]["ridge_input"] = retrieval_metrics(pred, split.a[n].float(), self.ks,
                                                                     center=self.centers.get(n))

    def evaluate(self, student, device="cpu") -> dict:
        preds = predict_all(student, self.x, self.batch_size, device)
        res = {}
        for n in self.split.a:
            res[n] = {"student": retrieval_metrics(preds[n], self.split.a[n], self.ks, center=self.centers.get(n))}
            res[n].update({k: v for k, v in self.baselines[n].items() if k != "student"})
        return res


def pick_metric(results: dict, name: str, input_teacher: str) -> float:
    """``eval.metric`` ("recall@1", or "teacher/recall@1") read from evaluate()'s results."""
    teacher, _, metric = name.rpartition("/")
    return results[teacher or input_teacher]["student"][metric]


def format_splits(results: dict[str, dict], pairs: dict[str, int], input_teacher: str | list[str]) -> str:
    """The validation and test tables, each under a line naming its split."""
    why = {"validation": "the run's decisions read it", "test": "evaluated once, at the end; report this"}
    return "\n".join(f"== {name} split ({pairs[name]} pairs; {why.get(name, 'evaluated')}) ==\n"
                     + format_table(res, input_teacher) for name, res in results.items())
