"""Child processes of the tests: their output once they stop, or what they printed
while failing to stop."""

from __future__ import annotations

import asyncio


async def output_once_stopped(process: asyncio.subprocess.Process, *, deadline_s: float) -> str:
    """The process's whole stdout once it exited; an AssertionError with the output so
    far (the shutdown log says what held it up) when it has not ended by the deadline."""
    assert process.stdout is not None
    chunks: list[bytes] = []

    async def drain() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            chunks.append(chunk)
        await process.wait()

    try:
        async with asyncio.timeout(deadline_s):
            await drain()
    except TimeoutError:
        tail = b"".join(chunks).decode(errors="replace")[-6000:]
        raise AssertionError(
            f"still running {deadline_s} s after being told to stop:\n{tail}"
        ) from None
    return b"".join(chunks).decode(errors="replace")
