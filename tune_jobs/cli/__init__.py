"""The ``textune`` command line (click). Each command lives in its own module and is loaded lazily."""
