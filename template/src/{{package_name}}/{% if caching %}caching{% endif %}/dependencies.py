from typing import Annotated

from fastapi import Depends, Request

from .cache import Cache


# async, though it awaits nothing: FastAPI runs plain def dependencies in a thread pool.
async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(get_cache)]
