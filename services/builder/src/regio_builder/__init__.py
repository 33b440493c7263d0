"""Application builder: fetches a commit and runs docker build, streaming the log."""
