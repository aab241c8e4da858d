"""``python -m llmpool._cli``: the ``llmpool`` command line."""

from ._main import main

if __name__ == "__main__":
    raise SystemExit(main())
