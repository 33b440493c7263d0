"""The tools a build runs: git to fetch the code, the Docker Engine to build it."""
