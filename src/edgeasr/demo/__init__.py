"""The embedded default: a synthesized Mandarin voice-command corpus and a small trainer."""
