"""validation_failed: the Else branch of the validation gate. Ends the run as failed, after the Data Docs
artifact was produced, so nothing trains on a bad dataset."""

from kfp import dsl
from kfp.dsl import HTML, Input

from .base import COMPONENT


@dsl.component(**COMPONENT)
def validation_failed(summary: str, data_docs: Input[HTML]):
    """Raise with the validation summary and where the Data Docs are."""
    raise RuntimeError(f"dataset validation failed, training skipped: {summary}. "
                       f"Data Docs: {data_docs.uri}")
