"""Replay recorded transcripts through strategy configs and measure them."""
