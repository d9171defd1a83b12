"""`python -m app --host --port --bundle --database-url --data-dir` (each also an environment variable)."""
from __future__ import annotations

import logging

from app.server import serve
from app.settings import parse_args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
