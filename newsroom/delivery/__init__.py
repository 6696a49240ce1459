"""Mailings frozen, claimed, sent and resumed; the senders and their helpers; bounces and the
mailboxes they come from; what came back (reputation); whether a site is ready to send."""
