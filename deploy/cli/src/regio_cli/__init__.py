"""regio: the operator CLI for a region."""
