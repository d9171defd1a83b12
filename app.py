"""Hugging Face Space entry point (app_file): the same app as `python -m app`, listening on all interfaces."""
from __future__ import annotations

import logging
import os

from app.server import serve
from app.settings import parse_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GELATO_HOST", "0.0.0.0")  # a Space reaches the app from outside its container
    os.environ.setdefault("GELATO_MODEL_NICENESS", "10")  # many visitors, none on this machine: answers go first
    serve(parse_args([]))
