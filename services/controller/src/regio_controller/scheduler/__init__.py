"""Where new instances go: the placement function, free of I/O so it is tested directly."""
