"""Mailings frozen, claimed, sent and resumed; the senders and their helpers; bounces and the
mailboxes they come from; VERP; whether a site is ready to send."""
