"""The example model: a classifier of iris flowers, trained on the dataset scikit-learn
ships (nothing is downloaded). ``models train-example`` registers it; the tests train
it too, with other settings, to have two versions to roll out.

scikit-learn and skops are imported by the functions that use them: the command line
imports this module for ``NAME``, and importing them took 2 to 4 s that every command,
``serve`` among them, would otherwise pay before doing anything.
"""

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

NAME = "iris"
FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


def iris() -> tuple[NDArray[np.float64], NDArray[Any]]:
    """The 150 flowers' measurements, and their species by name."""
    from sklearn.datasets import load_iris

    data = load_iris()
    return np.asarray(data.data, dtype=np.float64), data.target_names[data.target]


def train(regularization: float = 1.0) -> "Pipeline":
    """A scaled logistic regression; a smaller ``regularization`` makes a simpler model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, species = iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=1000))
    return model.fit(features, species)


def accuracy(model: "Pipeline") -> float:
    features, species = iris()
    return float(np.mean(model.predict(features) == species))


def artifact(model: "Pipeline") -> bytes:
    """The model as a skops file."""
    import skops.io

    data: bytes = skops.io.dumps(model)
    return data
