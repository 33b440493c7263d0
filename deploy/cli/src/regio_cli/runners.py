"""`regio runners`, `regio cordon|drain|uncordon NAME`: the region's runners as its
controller sees them, and taking one out of service (or back) through the controller's API."""
import httpx

from .region import Region


def _client(region: Region) -> httpx.Client:
    return httpx.Client(base_url=region.url_of("controller"), timeout=10,
                        headers={"X-Regio-Service-Token": region.secrets["service_token"]})


def table(region: Region) -> list[str]:
    with _client(region) as client:
        response = client.get("/internal/v1/runners")
        response.raise_for_status()
    lines = [f"{'NAME':16} {'STATE':7} {'SERVICE':10} {'INSTANCES':>9} {'MEMORY MB':>15} LABELS"]
    for r in response.json():
        service = "draining" if r["draining"] else "cordoned" if r["cordoned"] else "in"
        labels = ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
        lines.append(f"{r['name']:16} {r['state']:7} {service:10} {r['instances']:>9} "
                     f"{r['memory_used_mb']:>7}/{r['memory_mb']:<7} {labels}")
    return lines


def change(region: Region, name: str, action: str) -> str:
    with _client(region) as client:
        response = client.post(f"/internal/v1/runners/{name}/{action}")
    if response.status_code == 404:
        raise LookupError(f"no runner {name!r}")
    response.raise_for_status()
    return f"runner {name}: {action} done"
