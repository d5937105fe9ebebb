"""Request protection: rate limits, request filters, abuse limits, security headers."""
