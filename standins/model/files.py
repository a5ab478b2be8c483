"""The Files API of the model stand-in: uploads that fine-tuning and batches read.

amend uploads training data here before it creates a fine-tuning job, and
batch input before it creates a batch; the stand-in writes batch output and
training metrics here too. The other areas reach a file through
`file_for`, which refuses a file uploaded for another purpose, as OpenAI does.

python-multipart is not a dependency of amend, so `POST /v1/files` parses the
multipart body itself (see `parse_multipart`).
"""

from __future__ import annotations

import time
from email.message import Message
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from standins.model.state import ModelServerState, ServerState, StoredFile, digest
from standins.model.wire import bad_request, found

FILE_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
"""The purposes OpenAI accepts on upload; anything else is a 400."""

router = APIRouter()


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a multipart/form-data body: name -> (filename, bytes).

    amend does not depend on python-multipart, which FastAPI's Form/File need,
    and the `openai` client sends simple, well-formed bodies, so a small exact
    parser is enough and keeps uploaded bytes untouched.
    """
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise bad_request("Expected a multipart/form-data body.", param="file")
    fields: dict[str, tuple[str | None, bytes]] = {}
    delimiter = b"--" + boundary.encode("latin-1")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, separator, data = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        data = data.removesuffix(b"\r\n")
        part_headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, colon, value = line.partition(":")
            if colon:
                part_headers[key.strip()] = value.strip()
        name = part_headers.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (part_headers.get_filename(), data)
    return fields


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
    fields = parse_multipart(await request.body(), request.headers.get("content-type", ""))
    if "file" not in fields:
        raise bad_request("Missing required parameter: 'file'.", param="file")
    purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
    if purpose not in FILE_PURPOSES:
        raise bad_request(
            f"Invalid value for 'purpose': {purpose!r}; expected one of "
            f"{', '.join(sorted(FILE_PURPOSES))}.",
            param="purpose",
        )
    filename, content = fields["file"]
    return store_file(state, filename or "upload", purpose, content).as_json()


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
