"""Reads multipart forms the way Starlette (LiteLLM, vLLM, FastAPI) does, with its own parser.

Input on stdin: one JSON object per line, {"content_type": str, "body": hex}.
Output on stdout: one JSON object per line, in the same order:
{"fields": [[name, value], ...]} (a file's value is null), or {"error": str} when Starlette
refuses the form.
"""

import asyncio
import json
import logging
import sys

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser


async def read(content_type: str, body: bytes):
    async def stream():
        yield body
        yield b""

    parser = MultiPartParser(Headers({"content-type": content_type}), stream())
    form = await parser.parse()
    fields = []
    for name, value in form.multi_items():
        fields.append([name, None if isinstance(value, UploadFile) else value])
    return fields


async def main():
    # python-multipart logs every refusal; the answers are what matter here.
    logging.disable(logging.CRITICAL)
    for line in sys.stdin:
        case = json.loads(line)
        try:
            fields = await read(case["content_type"], bytes.fromhex(case["body"]))
            out = {"fields": fields}
        except Exception as e:  # Starlette refuses the form: the upstream answers 400.
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")


asyncio.run(main())
