from pydantic import Field
from pydantic_settings import SettingsConfigDict

from regio_common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REGIO_CONTROLPANEL_", extra="ignore")

    port: int = 8700
    public_url: str = Field("http://127.0.0.1:8700", description="Base of absolute links (pagination).")
    secrets_key: str = Field("", description="Fernet key for sensitive values at rest.")
    region_key: str = Field("", description="Fernet key sealing release environments for runner agents: with "
                            "per_region_sealing, the master each region's own key is derived from.")
    per_region_sealing: bool = Field(False, description="Seal each region's releases with a key of its own "
                                     "(regio_common.sealing.region_key), which only its runner agents hold.")
    build_key: str = Field("", description="Fernet key sealing repository credentials for the builders.")
    region_domain: str = "local.regio.localhost"
    ingress_port: int = Field(80, description="Port of the region's ingress, shown in site URLs.")
    ingress_address: str = Field("", description="host:port where other regions' ingresses reach this region's "
                                                 "(they forward a migrated application's hosts there); empty: none.")
    domain_recheck_seconds: float = Field(60, description="How often custom domains waiting for verification "
                                                          "are looked for whose check is due (every 5 minutes each).")
    region_refresh_seconds: float = Field(2, description="How often the regions are looked up: one added is "
                                                         "served, one retired is no longer, without a restart.")
    migration_grace_seconds: float = Field(86400, description="After a migration's cut-over, how long the old "
                                           "region forwards the environments' hosts and keeps their detached data.")
    migration_copy_seconds: float = Field(3600, description="How long a migration waits for a database's first "
                                          "copy, or for its deployments in the target region, before it fails.")
    billing_currency: str = Field("EUR", description="The currency of invoices of organisations the operator "
                                  "gave none (ISO 4217); the seeded price list is in it.")
    invoice_delay_seconds: float = Field(7200, description="How long after a month's end its invoices are made: "
                                         "the regions' meters report a period up to one period late.")
    invoice_check_seconds: float = Field(300, description="How often the control panel looks for months to close.")
    billing_seller: str = Field("Regio", description="Who invoices: the operator's name, printed on invoices.")
    billing_seller_address: str = Field("", description="The operator's address (and VAT number), printed on "
                                        "invoices; lines separated by newlines.")
    storage_sample_seconds: float = Field(3600, description="How often the size of every database and bucket is "
                                          "sampled for billing (storage GB-hours): one sample per period, aligned "
                                          "to the epoch.")
