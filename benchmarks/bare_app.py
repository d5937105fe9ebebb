"""The baseline: a bare FastAPI app with one trivial endpoint, served like the service."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root() -> dict[str, str]:
    return {"status": "ok"}
