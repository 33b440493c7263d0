"""Rules about environments: default domains and the variables a release gets injected."""

DEFAULT_ENVIRONMENTS = ("test", "live")  # every application starts with both
DEFAULT_PORT = 80


def default_domain(app_slug: str, env_slug: str, region_domain: str) -> str:
    """Divio's scheme: test is ``<app>-stage``, live is ``<app>``, others ``<app>-<env>``."""
    if env_slug == "live":
        return f"{app_slug}.{region_domain}"
    if env_slug == "test":
        return f"{app_slug}-stage.{region_domain}"
    return f"{app_slug}-{env_slug}.{region_domain}"


def release_port(environment_port: int | None, exposed_port: int | None) -> int:
    return environment_port or exposed_port or DEFAULT_PORT


def release_environment(custom: dict[str, str], *, domain: str, aliases: list[str], redirects: list[str],
                        stage: str, branch: str, secret_key: str, port: int,
                        services: dict[str, str] | None = None) -> dict[str, str]:
    """Injected variables first (``services``: the attached instances' DSNs); a custom variable
    of the same name overrides one."""
    injected = {
        **(services or {}),
        "DOMAIN": domain,
        "DOMAIN_ALIASES": ",".join(aliases),
        "DOMAIN_REDIRECTS": ",".join(redirects),
        "STAGE": stage,
        "GIT_BRANCH": branch,
        "SECRET_KEY": secret_key,
        "PORT": str(port),
    }
    return {**injected, **custom}
