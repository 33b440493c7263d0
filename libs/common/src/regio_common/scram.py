"""PostgreSQL's SCRAM-SHA-256 password verifier, made on our side of the connection."""
import base64
import hashlib
import hmac
import secrets


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores, computed here (as psql's \\password does) so
    the password itself never reaches the server, where a failed statement is logged in full.
    ``ALTER ROLE … PASSWORD '<verifier>'`` stores it as is."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
