"""The Gelato playground front end: Gradio pages, event wiring and launch (no model math, no SQL)."""
