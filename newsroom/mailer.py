"""MIME messages and SMTP connections: the one seam between newsroom and a mail relay."""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage

import aiosmtplib

from newsroom.errors import NewsroomError
from newsroom.settings import Config


def smtp_client(config: Config) -> aiosmtplib.SMTP:
    """An unconnected client for the configured relay (TLS with certificate checks)."""
    security = config.text("smtp.security")
    return aiosmtplib.SMTP(
        hostname=config.text("smtp.host"),
        port=config.integer("smtp.port"),
        timeout=config.number("smtp.timeout"),
        use_tls=security == "tls",
        start_tls=security == "starttls",
        tls_context=ssl.create_default_context() if security != "none" else None,
    )


async def send_message_async(
    config: Config, message: EmailMessage, envelope_from: str | None = None
) -> str:
    """Send one message on a connection of its own; returns the relay's answer."""
    client = smtp_client(config)
    try:
        await client.connect()
        if config.text("smtp.username"):
            await client.login(config.text("smtp.username"), config.text("smtp.password"))
        _errors, answer = await client.send_message(message, sender=envelope_from)
        return answer
    except aiosmtplib.SMTPException as exc:
        raise NewsroomError(
            f"the SMTP relay {config.text('smtp.host')}:{config.integer('smtp.port')} refused the message: {exc}"
        ) from None
    except OSError as exc:
        raise NewsroomError(
            f"cannot reach the SMTP relay {config.text('smtp.host')}:{config.integer('smtp.port')}: {exc} "
            "(start one with `newsroom dev-smtp`, or set [smtp] host and port)"
        ) from None
    finally:
        if client.is_connected:
            client.close()


def send_message(config: Config, message: EmailMessage, envelope_from: str | None = None) -> str:
    """Send one message (a confirmation, a test copy) and wait for the relay's answer."""
    return asyncio.run(send_message_async(config, message, envelope_from))
