"""Rolling a release out: the steps (release commands, scaling, sanity tests, finalizing),
the run that drives them for one deployment, and the worker that resumes runs from the database."""
