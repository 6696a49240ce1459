"""Messages as bytes, SMTP connections, DKIM, rate limits, the dev SMTP server. No database."""
