"""A real SMTP server for the e-mail tests: aiosmtpd with STARTTLS required (the certificate
comes from the test's private CA) and AUTH allowed only after it. Every message received is
parsed with Python's `email` package (policy.default, which records defects) and written as one
JSON line to the output file.

Usage: smtp_server.py CERT KEY OUT_FILE USER PASSWORD
Prints "READY <port>" once listening; stops when standard input closes.
"""

import email
import email.policy
import json
import socket
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def main() -> None:
    cert, key, out_path, user, password = sys.argv[1:6]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            defects = [type(d).__name__ for d in msg.defects]
            parts = []
            for part in msg.walk():
                defects += [type(d).__name__ for d in part.defects]
                if not part.is_multipart():
                    parts.append({"type": part.get_content_type(), "content": part.get_content()})
            record = {
                "ehlo": session.host_name,
                "tls": session.ssl is not None,
                "auth": session.authenticated,
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "headers": [[k, str(v)] for k, v in msg.items()],
                "subject": str(msg["Subject"]),
                "message_id": str(msg["Message-ID"]),
                "defects": defects,
                "parts": parts,
            }
            with open(out_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
            return "250 2.0.0 queued"

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        server_hostname="mx.test",
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    controller.start()
    print(f"READY {port}", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
