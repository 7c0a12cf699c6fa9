"""The classify family's served model: class probabilities and the predicted class(es) per upload.

JSON answer (:class:`ClassifyBody`): the problem, a probability per class, the predicted class names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from medsight.deploy.serving import PredictBody, ServedModel
from medsight.errors import DataError

if TYPE_CHECKING:
    from medsight.io import Image
    from medsight.runs import Run


class ClassifyBody(PredictBody):
    problem: str
    probabilities: dict[str, float]
    predicted: list[str]


class Classifier(ServedModel):
    """A run's classifier (PyTorch, on CUDA when there is one) answering probabilities."""

    response_model: ClassVar[type[PredictBody]] = ClassifyBody

    def __init__(self, run: Run) -> None:
        from medsight.tasks.classify.pipeline import load_model

        super().__init__(run)
        self.task, self.model = load_model(run, "auto")

    def predict(self, image: Image, output: str, preview: bool) -> dict[str, Any]:
        from medsight.data.spec import Case
        from medsight.metrics.classification import predict_labels
        from medsight.tasks.classify.outputs import predicted_names
        from medsight.tasks.classify.pipeline import predict_probabilities, stack_inputs

        if output != "json":
            raise DataError(f"format={output}: a classifier answers JSON only (files are for masks)")
        plan = self.task.plan
        x = stack_inputs([Case("upload", classes=-1, array=image.array)], plan)
        probs = predict_probabilities(self.task, self.model, x)
        label = predict_labels(probs, plan.problem, plan.thresholds)[0]
        names = list(plan.class_names)
        fields = {
            "problem": plan.problem,
            "probabilities": {n: float(p) for n, p in zip(names, probs[0], strict=True)},
            "predicted": predicted_names(label, names),
        }
        return self.answer(image, fields, with_preview=preview)
