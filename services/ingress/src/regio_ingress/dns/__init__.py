"""The upstreams of each environment, served to Caddy as DNS SRV records: Caddy looks them up
again every refresh, so a deployment switches instances without reloading Caddy's config."""
