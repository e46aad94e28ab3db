"""aiosmtpd handlers for Warden's end-to-end tests.

``RejectingMailbox DIR`` stores messages in the Maildir DIR like
``aiosmtpd.handlers.Mailbox``, except that a message whose decoded Subject contains
the text in the environment variable ``WARDEN_TEST_SMTP_REJECT`` is refused with a
permanent ``554 5.6.0`` reply after DATA, as a mail server's content filter does.
"""

import os
from email.header import decode_header, make_header

from aiosmtpd.handlers import Mailbox


class RejectingMailbox(Mailbox):
    async def handle_DATA(self, server, session, envelope):
        marker = os.environ.get("WARDEN_TEST_SMTP_REJECT", "")
        if marker:
            message = self.prepare_message(session, envelope)
            subject = str(make_header(decode_header(message.get("Subject", ""))))
            if marker in subject:
                return "554 5.6.0 Message content rejected by policy"
        return await super().handle_DATA(server, session, envelope)
