"""``FlagsDep``: the OpenFeature client, for reading flags in handlers."""

from typing import Annotated

from fastapi import Depends
from openfeature import api
from openfeature.client import OpenFeatureClient


def flags_client() -> OpenFeatureClient:
    # The request's evaluation context is already set (see context.py).
    return api.get_client()


FlagsDep = Annotated[OpenFeatureClient, Depends(flags_client)]
