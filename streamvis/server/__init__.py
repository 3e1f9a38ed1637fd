"""The WebRTC server: viewers, WHEP/WHIP, metrics."""
