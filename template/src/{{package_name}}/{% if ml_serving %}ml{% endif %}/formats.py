"""Loading artifacts and calling them: scikit-learn models saved with skops, ONNX models
run by onnxruntime.

skops reads a scikit-learn model without unpickling it: it lists the types a file would
create, and loads only when each is trusted (its own list of scikit-learn, NumPy and
SciPy types, and ``APP_ML__TRUSTED_TYPES``). A pickle can run any code when loaded, so
the service never loads one, whoever uploads it.

onnxruntime, skops and scikit-learn are imported when an artifact is first read: importing
them took 2 to 4 s, which every command line and every process serving no model yet
would otherwise pay at start.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from .signature import Signature

if TYPE_CHECKING:
    import onnxruntime

Framework = Literal["sklearn", "onnx"]
# {"label": ..., "probabilities": {label: p}} for a classifier, {"value": x} for a regressor.
Output = dict[str, Any]


class ArtifactRefusedError(ValueError):
    """The artifact cannot be served: untrusted types, unreadable, or not a model."""


class ModelInputError(ValueError):
    """The model refused these rows (a category it never saw, a value it cannot take), or
    answered them with something that is not a finite number: the caller's to fix."""


def _finite(outputs: list[Output]) -> list[Output]:
    for output in outputs:
        numbers = [output.get("value", 0.0), *output.get("probabilities", {}).values()]
        if not all(math.isfinite(number) for number in numbers):
            raise ModelInputError("the model's answer for these inputs is not a finite number")
    return outputs


def checked_call(predictor: "Predictor", rows: NDArray[Any]) -> list[Output]:
    """``predictor.predict``, with what the model refuses told apart from faults."""
    try:
        outputs = predictor.predict(rows)
    except (ValueError, TypeError, FloatingPointError) as exc:
        raise ModelInputError(f"the model refused the input: {exc}") from exc
    return _finite(outputs)


class Predictor(Protocol):
    def predict(self, rows: NDArray[Any]) -> list[Output]: ...


@dataclass
class Described:
    """What an artifact says about itself, to fill in a signature at registration, and
    the model it loaded (a scikit-learn estimator or an onnxruntime session), so that
    registering loads the file once."""

    model: Any
    feature_count: int | None = None
    feature_names: list[str] | None = None
    task: Literal["classification", "regression"] | None = None
    classes: list[str | int] | None = None


def _python(values: Sequence[Any]) -> list[str | int]:
    """Class labels as JSON takes them (NumPy scalars are not)."""
    return [value.item() if isinstance(value, np.generic) else value for value in values]


def _classified(
    classes: Sequence[str | int], probabilities: NDArray[np.floating[Any]]
) -> list[Output]:
    best = probabilities.argmax(axis=1)
    return [
        {
            "label": classes[int(index)],
            "probabilities": {str(label): float(p) for label, p in zip(classes, row, strict=True)},
        }
        for index, row in zip(best, probabilities, strict=True)
    ]


class SklearnPredictor:
    def __init__(self, model: Any, signature: Signature) -> None:
        self._model = model
        self._signature = signature
        self._probabilities = signature.task == "classification" and hasattr(model, "predict_proba")

    def predict(self, rows: NDArray[Any]) -> list[Output]:
        if self._probabilities:
            classes = self._signature.classes or _python(self._model.classes_)
            return _classified(classes, np.asarray(self._model.predict_proba(rows)))
        predicted = self._model.predict(rows)
        if self._signature.task == "classification":
            return [{"label": label} for label in _python(predicted)]
        return [{"value": float(value)} for value in np.ravel(predicted)]


class OnnxPredictor:
    def __init__(self, session: "onnxruntime.InferenceSession", signature: Signature) -> None:
        self._session = session
        self._signature = signature
        tensor = session.get_inputs()[0]
        self._input = tensor.name
        self._dtype: type = {"tensor(float)": np.float32, "tensor(double)": np.float64}.get(
            tensor.type, object
        )

    def predict(self, rows: NDArray[Any]) -> list[Output]:
        outputs = self._session.run(None, {self._input: rows.astype(self._dtype)})
        if self._signature.task == "regression":
            return [{"value": float(value)} for value in np.ravel(outputs[0])]
        labels = _python(list(np.ravel(outputs[0])))
        if len(outputs) < 2:
            return [{"label": label} for label in labels]
        scores = outputs[1]
        if isinstance(scores, list):  # skl2onnx's ZipMap: one {label: p} per row
            classes = _python(list(scores[0])) if scores else []
            scores = np.array([[row[label] for label in classes] for row in scores])
        else:
            classes = self._signature.classes or list(range(np.shape(scores)[1]))
        return _classified(classes, np.asarray(scores, dtype=np.float64))


def _sklearn_model(data: bytes, trusted: Sequence[str]) -> Any:
    import skops.io

    try:
        found = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # a zip file skops cannot read, or not a zip file at all
        raise ArtifactRefusedError(f"not a skops file: {exc}") from None
    refused = sorted(set(found) - set(trusted))
    if refused:
        raise ArtifactRefusedError(
            "the skops file holds types that are not trusted: "
            f"{', '.join(refused)}; if you trust them, add them to APP_ML__TRUSTED_TYPES "
            "(where the file is registered and in every serving process)"
        )
    try:
        return skops.io.loads(data, trusted=found)
    except Exception as exc:
        raise ArtifactRefusedError(f"the skops file does not load: {exc}") from None


def _onnx_session(data: bytes) -> "onnxruntime.InferenceSession":
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Concurrency comes from the service's inference threads; one intra-op thread per
    # call keeps two models from each claiming every core.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ArtifactRefusedError(f"not an ONNX model onnxruntime can run: {exc}") from None


def describe(framework: Framework, data: bytes, trusted: Sequence[str]) -> Described:
    """Loads the artifact (refusing what cannot be served) and reads what it declares."""
    if framework == "sklearn":
        from sklearn.base import is_classifier

        model = _sklearn_model(data, trusted)
        if not hasattr(model, "predict"):
            raise ArtifactRefusedError(f"a {type(model).__name__} has no predict method")
        names = getattr(model, "feature_names_in_", None)
        task: Literal["classification", "regression"] = (
            "classification" if is_classifier(model) else "regression"
        )
        return Described(
            model=model,
            feature_count=getattr(model, "n_features_in_", None),
            feature_names=None if names is None else [str(name) for name in names],
            task=task,
            classes=_python(model.classes_)
            if task == "classification" and hasattr(model, "classes_")
            else None,
        )
    session = _onnx_session(data)
    shape = session.get_inputs()[0].shape
    return Described(
        model=session,
        feature_count=shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None,
        # skl2onnx's classifiers answer a label and probabilities, its regressors one tensor.
        task="classification" if len(session.get_outputs()) > 1 else "regression",
    )


def predictor(framework: Framework, model: Any, signature: Signature) -> Predictor:
    """``model`` (as ``describe`` or ``load`` opened it) answering by ``signature``."""
    if framework == "sklearn":
        return SklearnPredictor(model, signature)
    return OnnxPredictor(model, signature)


def load(
    framework: Framework, data: bytes, signature: Signature, trusted: Sequence[str]
) -> Predictor:
    model = _sklearn_model(data, trusted) if framework == "sklearn" else _onnx_session(data)
    return predictor(framework, model, signature)
