"""``python -m cam_core {train,explain,evaluate,synth,mosaics} …``: see :mod:`cam_core.cli`."""

from cam_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
