#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""SMTP sink for tests: store every received message as an .eml file.

Each message is written to DIR/<UTC time>-<id>.eml (temp file + rename, so a
reader never sees half a message) with the envelope on top as X-Bmops-Peer,
X-Bmops-Mail-From and X-Bmops-Rcpt-To headers, and logged as one line.
"""

import argparse
import asyncio
import datetime
import os
import signal
import uuid

from aiosmtpd.smtp import SMTP, AuthResult


class Sink:
    def __init__(self, directory: str):
        self.directory = directory

    async def handle_DATA(self, server, session, envelope):
        now = datetime.datetime.now(datetime.UTC)
        name = f"{now:%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:8]}.eml"
        rcpt = ", ".join(envelope.rcpt_tos)
        head = (
            f"X-Bmops-Peer: {session.peer[0]}\r\n"
            f"X-Bmops-Mail-From: {envelope.mail_from}\r\n"
            f"X-Bmops-Rcpt-To: {rcpt}\r\n"
        ).encode()
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode()
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head + body)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.directory, name))
        print(
            f"{now:%Y-%m-%dT%H:%M:%SZ} smtp-sink: from=<{envelope.mail_from}> to=<{rcpt}> "
            f"size={len(body)} file={name}",
            flush=True,
        )
        return "250 Message accepted for delivery"


def accept_any(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=True)


async def serve(directory: str, host: str, ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    handler = Sink(directory)
    for port in ports:
        await loop.create_server(
            lambda: SMTP(
                handler,
                hostname="smtp-sink",
                authenticator=accept_any,
                auth_require_tls=False,
                enable_SMTPUTF8=True,
            ),
            host=host,
            port=port,
        )
        print(f"smtp-sink: listening on {host}:{port}, storing mail in {directory}", flush=True)
    stop = asyncio.Event()
    # PID 1 in a container: without handlers SIGTERM/SIGINT would be ignored
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="/srv/mail")
    p.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a sink in a test container
    p.add_argument("--port", type=int, action="append")
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    asyncio.run(serve(a.dir, a.host, a.port or [25, 1025]))


if __name__ == "__main__":
    main()
