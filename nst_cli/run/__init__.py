"""One stylisation: inputs -> targets -> each scale -> recording, resume, and the session
that keeps the newest good image."""
