"""Run the service: python -m regio_ingress"""
import uvicorn

from regio_common.logging import configure_logging

from .settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging("ingress", settings.log_level)
    uvicorn.run("regio_ingress.main:create_app", factory=True, host=settings.host, port=settings.port,
                log_config=None, access_log=False)


if __name__ == "__main__":
    main()
