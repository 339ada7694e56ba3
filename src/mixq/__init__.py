from mixq.version import __version__
