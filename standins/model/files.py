"""The Files API of the model stand-in: uploads that fine-tuning and batches read.

amend uploads training data here before it creates a fine-tuning job, and
batch input before it creates a batch; the stand-in writes batch output and
training metrics here too. The other areas reach a file through
`file_for`, which refuses a file uploaded for another purpose, as OpenAI does.

`POST /v1/files` takes the multipart body the `openai` client sends, parsed by
python-multipart (Starlette's form parser), which keeps uploaded bytes as sent.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from standins.model.state import ModelServerState, ServerState, StoredFile, digest
from standins.model.wire import bad_request, found

FILE_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
"""The purposes OpenAI accepts on upload; anything else is a 400."""

router = APIRouter()


def stored_file(state: ModelServerState, file_id: str) -> StoredFile:
    """The file named in a Files API path, or OpenAI's 404."""
    return found(state.files, file_id, f"No such File object: {file_id}", "id")


def store_file(state: ModelServerState, filename: str, purpose: str, content: bytes) -> StoredFile:
    """Keep `content` as a new file, whether a client uploaded it or the stand-in wrote it."""
    created = StoredFile(
        id=state.new_id("file-", 22, filename, purpose, digest(content)),
        filename=filename,
        purpose=purpose,
        content=content,
        created_at=int(time.time()),
    )
    state.files[created.id] = created
    return created


def file_for(state: ModelServerState, file_id: Any, purpose: str, param: str) -> StoredFile:
    """The uploaded file a request names, refused unless it was uploaded for this use.

    Args:
        state: The stand-in's state.
        file_id: The id from the request body, unchecked.
        purpose: The purpose the using endpoint needs (`fine-tune`, `batch`).
        param: The request field that named it, for the error's `param`.
    """
    if not isinstance(file_id, str) or file_id not in state.files:
        raise bad_request(f"invalid {param}: {file_id}", param=param)
    found = state.files[file_id]
    if found.purpose != purpose:
        raise bad_request(
            f"File {file_id} has purpose {found.purpose!r}; this needs purpose {purpose!r}.",
            param=param,
        )
    return found


@router.post("/v1/files")
async def upload_file(request: Request, state: ServerState) -> dict[str, Any]:
    """Upload a file (multipart: `file` and `purpose`)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "multipart/form-data":
        raise bad_request("Expected a multipart/form-data body.", param="file")
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise bad_request("Missing required parameter: 'file'.", param="file")
    purpose = str(form.get("purpose") or "").strip()
    if purpose not in FILE_PURPOSES:
        raise bad_request(
            f"Invalid value for 'purpose': {purpose!r}; expected one of "
            f"{', '.join(sorted(FILE_PURPOSES))}.",
            param="purpose",
        )
    content = await upload.read()
    return store_file(state, upload.filename or "upload", purpose, content).as_json()


@router.get("/v1/files")
async def list_files(state: ServerState) -> dict[str, Any]:
    """Every file, oldest first, in one page."""
    data = [f.as_json() for f in sorted(state.files.values(), key=lambda f: f.created_at)]
    return {"object": "list", "data": data, "has_more": False}


@router.get("/v1/files/{file_id}")
async def retrieve_file(file_id: str, state: ServerState) -> dict[str, Any]:
    """One file's File object."""
    return stored_file(state, file_id).as_json()


@router.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, state: ServerState) -> Response:
    """A file's bytes, exactly as uploaded or written."""
    return Response(stored_file(state, file_id).content, media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, state: ServerState) -> dict[str, Any]:
    """Forget a file, so the Files API is whole for a client that cleans up."""
    stored_file(state, file_id)
    del state.files[file_id]
    return {"id": file_id, "object": "file", "deleted": True}
