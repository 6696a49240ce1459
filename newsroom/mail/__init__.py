"""Messages as bytes, SMTP connections, DKIM, VERP envelope senders, rate limits, the dev SMTP
server. No database: people/ (confirmations) and delivery/ (mailings) both send through here."""
