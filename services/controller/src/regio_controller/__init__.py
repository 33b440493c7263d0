"""Application controller: places instances on runners, rolls out releases, heals."""
