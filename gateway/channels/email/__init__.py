"""The email channel: raw MIME, SendGrid and Mailgun webhooks in; SMTP out.

Adapters only translate (bytes in, gateway.domain.types dataclasses out); storage, dedupe and thread
lookup happen in the core. Public API re-exported here.
"""
from gateway.channels.email.html_text import html_to_text
from gateway.channels.email.loops import auto_generated_reason, is_auto_generated
from gateway.channels.email.mime import content_ref, iter_attachment_payloads, parse_mime
from gateway.channels.email.quotes import strip_quotes
from gateway.channels.email.render import build_email, email_bytes
from gateway.channels.email.sender import SmtpSender, classify_smtp_error
from gateway.channels.email.smtp_listener import InboundSmtpServer
from gateway.channels.email.threading import find_thread_token, make_thread_token, parse_thread_token, reply_address
from gateway.channels.email.webhooks import (UploadedFile, iter_webhook_payloads, parse_mailgun, parse_sendgrid,
                                             read_form, verify_mailgun_signature)

__all__ = [
    "InboundSmtpServer", "SmtpSender", "UploadedFile", "auto_generated_reason", "build_email",
    "classify_smtp_error", "content_ref", "email_bytes", "find_thread_token", "html_to_text",
    "is_auto_generated", "iter_attachment_payloads", "iter_webhook_payloads", "make_thread_token",
    "parse_mailgun", "parse_mime", "parse_sendgrid", "parse_thread_token", "read_form",
    "reply_address", "strip_quotes", "verify_mailgun_signature",
]
