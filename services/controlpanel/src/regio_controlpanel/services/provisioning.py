"""Creating and deleting a service instance's database or bucket on the server its service
names, and the variables that tell a release where they are.

A service's server is described by its connection (stored encrypted on the service: the
region's own servers are registered by `regio up`, a dedicated one by an operator). The
names of what is created derive from the instance's id, so a provisioning step that is
retried after a crash finds and reuses what it created before."""
import json
from dataclasses import dataclass, field
from urllib.parse import quote

from ..db.models import Service, ServiceInstance
from ..domain.service_instances import DEFAULT_PREFIX, ServiceType
from ..region_services import database
from ..region_services.storage import Credentials, ObjectStorage
from .crypto import Vault


class ProvisioningFailed(Exception):
    """The server refused or did not answer; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class DatabaseServer:
    # The superuser's, as the control panel reaches the server: never in a repr (a failed
    # test's report, a log line that shows the object).
    admin_url: str = field(repr=False)
    host: str  # where the applications' containers reach it
    port: int


@dataclass(frozen=True)
class StorageServer:
    endpoint: str  # the S3 API as the control panel reaches it, e.g. http://127.0.0.1:8735
    access_key: str  # the administrator's
    secret_key: str = field(repr=False)
    host: str  # where the applications' containers reach it
    port: int
    backup_bucket: str = "regio-backups"

    def client(self) -> ObjectStorage:
        """Used as ``async with server.client() as storage``."""
        return ObjectStorage(self.endpoint, Credentials(self.access_key, self.secret_key))


def server_of(service: Service, vault: Vault) -> DatabaseServer | StorageServer:
    if not service.connection_encrypted:
        raise ProvisioningFailed(f"{service.name} has no server in this region yet (an operator registers it)")
    connection = json.loads(vault.decrypt(service.connection_encrypted))
    return DatabaseServer(**connection) if service.type == ServiceType.DATABASE else StorageServer(**connection)


def database_name(instance: ServiceInstance) -> str:
    return f"si_{instance.id.hex}"


def bucket_name(instance: ServiceInstance) -> str:
    return f"si-{instance.id.hex}"


async def provision(service: Service, server: DatabaseServer | StorageServer, instance: ServiceInstance) -> dict:
    """The instance's credentials, created on its server (again, if they were before)."""
    try:
        if isinstance(server, DatabaseServer):
            name = database_name(instance)
            role, password = await database.create_database(server.admin_url, name)
            return {"database": name, "role": role, "password": password,
                    "dsn": f"postgres://{role}:{quote(password, safe='')}@{server.host}:{server.port}/{name}"}
        bucket = bucket_name(instance)
        async with server.client() as storage:
            access_key, secret_key = await storage.create_bucket_with_key(bucket)
        return {"bucket": bucket, "access_key": access_key, "secret_key": secret_key,
                "dsn": f"s3://{access_key}:{quote(secret_key, safe='')}@{bucket}.{server.host}:{server.port}/"
                       f"?auth=s3v4&domain={server.host}:{server.port}"}
    except Exception as e:  # whatever the server said, told without credentials
        raise ProvisioningFailed(f"{service.name} could not create it: {_safe(e, server)}") from e


async def deprovision(service: Service, server: DatabaseServer | StorageServer, credentials: dict) -> None:
    """Deletes the instance's data and credentials."""
    try:
        if isinstance(server, DatabaseServer):
            await database.drop_database(server.admin_url, credentials["database"], credentials["role"])
        else:
            async with server.client() as storage:
                await storage.delete_bucket_and_key(credentials["bucket"], credentials["access_key"])
    except Exception as e:
        raise ProvisioningFailed(f"{service.name} could not delete it: {_safe(e, server)}") from e


def variables(instance: ServiceInstance, credentials: dict) -> dict[str, str]:
    """What a release is told of an attached instance, in Divio's names."""
    if instance.type == ServiceType.DATABASE:
        found = {f"{instance.prefix}_DATABASE_DSN": credentials["dsn"]}
        if instance.prefix == DEFAULT_PREFIX:
            found["DATABASE_URL"] = credentials["dsn"]
        return found
    return {f"{instance.prefix}_STORAGE_DSN": credentials["dsn"]}


def _safe(error: Exception, server: DatabaseServer | StorageServer) -> str:
    text = str(error) or type(error).__name__
    secret = server.secret_key if isinstance(server, StorageServer) else server.admin_url
    return text.replace(secret, "***")
