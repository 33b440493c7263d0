"""Just enough S3 for the test application: signed (SigV4) GET, PUT and list on one bucket,
with nothing but the standard library."""
import hashlib
import hmac
import urllib.error
import urllib.request
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

REGION = "us-east-1"


class Bucket:
    def __init__(self, dsn: str, bucket: str | None = None):
        """``dsn`` in Divio's form: s3://KEY:SECRET@bucket.host:port/?auth=s3v4&domain=…"""
        parts = urlsplit(dsn)
        self.access_key, self.secret_key = unquote(parts.username), unquote(parts.password)
        own_bucket, _, self.endpoint = parts.hostname.partition(".")
        self.endpoint = f"{self.endpoint}:{parts.port}" if parts.port else self.endpoint
        self.bucket = bucket or own_bucket

    def put(self, key: str, body: bytes) -> None:
        self._request("PUT", f"/{self.bucket}/{quote(key)}", body)

    def get(self, key: str) -> bytes:
        return self._request("GET", f"/{self.bucket}/{quote(key)}")

    def keys(self) -> list[str]:
        listing = ElementTree.fromstring(self._request("GET", f"/{self.bucket}", query="list-type=2"))
        return sorted(e.text for e in listing.iter() if e.tag.endswith("}Key") or e.tag == "Key")

    def _request(self, method: str, path: str, body: bytes = b"", query: str = "") -> bytes:
        now = datetime.now(UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": self.endpoint, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, path, query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed,
                               payload])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        url = f"http://{self.endpoint}{path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, data=body if method == "PUT" else None, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()


Error = urllib.error.HTTPError
