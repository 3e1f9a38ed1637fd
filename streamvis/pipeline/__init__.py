"""The per-frame step and what it is made of: `step` (`Pipeline`: detect on keyframes, track or propagate,
narrate, annotate), `loading` (`Models`, `load_models`: each model loaded once per process), `tracking`,
`annotate` and `keyframes` (the offline and live rules). Offline (`streamvis.offline`) and live
(`streamvis.live`) both run a `Pipeline` per source."""
