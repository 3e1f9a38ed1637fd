"""Scene narration for accessibility: when to speak, what to say, speech and captions."""
