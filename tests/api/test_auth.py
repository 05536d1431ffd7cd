"""Sign-in with Ethereum: real signatures from eth-account, every rejection a clear 401
in the one error shape, nonces single-use even under concurrency, JWTs that cannot be forged."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import SECRET, Wallet, sign_in


def ago(**delta: float) -> str:
    """An RFC 3339 time `delta` before now (negative: after), computed when called."""
    return (datetime.now(UTC) - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def test_sign_in_gives_a_token_bound_to_the_wallet(client, wallet):
    token = sign_in(client, wallet)

    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert me.status_code == 200
    assert me.json() == {"wallet": wallet.address}
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="buzzer-api")
    assert claims["sub"] == wallet.address.lower()
    assert claims["exp"] - claims["iat"] == 24 * 3600


def test_nonces_are_long_and_fresh(client):
    nonces = {client.get("/api/v1/auth/nonce").json()["nonce"] for _ in range(20)}
    assert len(nonces) == 20
    assert all(len(n) * 4 >= 96 for n in nonces)


@pytest.mark.parametrize(
    ("make_overrides", "code"),
    [
        (lambda: {"domain": "evil.example"}, "wrong_domain"),
        (lambda: {"uri": "https://evil.example"}, "wrong_uri"),
        (lambda: {"uri": "http://buzzer.test"}, "wrong_uri"),
        (lambda: {"chain_id": 8453}, "wrong_chain"),
        (lambda: {"expiration_time": ago(seconds=5)}, "expired_message"),
        (lambda: {"not_before": ago(minutes=-5)}, "not_yet_valid"),
        (lambda: {"issued_at": ago(hours=1)}, "message_too_old"),
        (lambda: {"issued_at": "2100-01-01T00:00:00Z"}, "issued_in_future"),
        (lambda: {"issued_at": ago(minutes=-5)}, "issued_in_future"),
    ],
    ids=[
        "domain",
        "uri",
        "scheme",
        "chain",
        "expired",
        "not-yet-valid",
        "too-old",
        "year-2100",
        "five-minutes-ahead",
    ],
)
def test_correctly_signed_but_wrong_messages_are_refused(client, wallet, make_overrides, code):
    nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce, **make_overrides())

    reply = client.post(
        "/api/v1/auth/verify", json={"message": message, "signature": wallet.sign(message)}
    )

    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == code
    assert set(reply.json()["error"]) == {"code", "message", "details"}


def test_a_clock_a_little_ahead_still_signs_in(client, wallet):
    nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce, issued_at=ago(seconds=-30))
    reply = client.post(
        "/api/v1/auth/verify", json={"message": message, "signature": wallet.sign(message)}
    )
    assert reply.status_code == 200, reply.text


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.mark.parametrize(
    "spoil",
    [
        lambda sig: "0x" + "00" * 32 + sig[66:],  # r = 0
        lambda sig: sig[:66] + f"{SECP256K1_N:064x}" + sig[-2:],  # s = N
        lambda sig: sig[:66] + "ff" * 32 + sig[-2:],  # s > N
        lambda sig: sig[:-1],  # odd length
        lambda sig: sig[:-2],  # 64 bytes
        lambda sig: sig + "00",  # 66 bytes
        lambda sig: sig[:-2] + "63",  # v = 99, an EIP-155 v recovery would accept
        lambda sig: sig[:-2] + "02",
    ],
    ids=["r-zero", "s-order", "s-above-order", "odd-length", "short", "long", "v-99", "v-2"],
)
def test_a_signature_of_invalid_value_is_a_401_before_any_nonce(client, wallet, spoil):
    message = wallet.message("abcdef0123456789")  # a nonce never issued: not needed to refuse
    reply = client.post(
        "/api/v1/auth/verify", json={"message": message, "signature": spoil(wallet.sign(message))}
    )
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "malformed_signature"
    assert set(reply.json()["error"]) == {"code", "message", "details"}


def test_a_nonce_we_never_issued_is_refused(client, wallet):
    message = wallet.message("abcdef0123456789")
    reply = client.post(
        "/api/v1/auth/verify", json={"message": message, "signature": wallet.sign(message)}
    )
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "unknown_nonce"


def test_a_signature_by_another_wallet_is_refused(client, wallet):
    nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce)
    reply = client.post(
        "/api/v1/auth/verify", json={"message": message, "signature": Wallet().sign(message)}
    )
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "bad_signature"


def test_a_nonce_is_used_once(client, wallet):
    nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce)
    body = {"message": message, "signature": wallet.sign(message)}
    assert client.post("/api/v1/auth/verify", json=body).status_code == 200
    again = client.post("/api/v1/auth/verify", json=body)
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "unknown_nonce"


def test_fifty_parallel_verifies_of_one_message_give_one_token(client, wallet):
    nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce)
    body = {"message": message, "signature": wallet.sign(message)}

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(
            pool.map(lambda _: client.post("/api/v1/auth/verify", json=body).status_code, range(50))
        )

    assert statuses.count(200) == 1
    assert statuses.count(401) == 49


def test_an_oversized_message_is_refused_before_any_work(client, wallet):
    nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce, statement="x" * 5_000)
    reply = client.post(
        "/api/v1/auth/verify", json={"message": message, "signature": wallet.sign(message)}
    )
    assert reply.status_code == 413
    assert reply.json()["error"]["code"] == "payload_too_large"


def test_malformed_input_gets_the_error_shape(client):
    reply = client.post("/api/v1/auth/verify", json={"message": "hello", "signature": "0x12"})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "malformed_message"
    reply = client.post("/api/v1/auth/verify", json={"message": "hello"})
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "validation_error"
    assert reply.json()["error"]["details"]["problems"][0]["field"] == "body.signature"


def forged(claims_change: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    now = int(time.time())
    claims = {
        "sub": "0x" + "ab" * 20,
        "iat": now,
        "exp": now + 3600,
        "iss": "buzzer-network",
        "aud": "buzzer-api",
    }
    claims.update(claims_change)
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda: forged({}, key="another-secret-" + "y" * 40), "invalid_token"),
        (lambda: forged({"exp": int(time.time()) - 10}), "token_expired"),
        (lambda: forged({"aud": "someone-else"}), "invalid_token"),
        (lambda: forged({"iss": "someone-else"}), "invalid_token"),
        (lambda: jwt.encode({"sub": "0x" + "ab" * 20}, key="", algorithm="none"), "invalid_token"),
        (lambda: "not.a.token", "invalid_token"),
    ],
    ids=["wrong-key", "expired", "audience", "issuer", "alg-none", "garbage"],
)
def test_bad_tokens_are_refused(client, make_token, code):
    # tokens are made when the test runs: made at collection they could expire first
    reply = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {make_token()}"})
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == code


def test_a_tampered_subject_is_refused(client, wallet):
    token = sign_in(client, wallet)
    header, _, signature = token.split(".")
    other = forged({"sub": "0x" + "cd" * 20}).split(".")[1]
    reply = client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {header}.{other}.{signature}"}
    )
    assert reply.status_code == 401


def test_no_token_is_refused(client):
    reply = client.get("/api/v1/auth/me")
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "no_token"


def test_a_wrong_domain_is_told_which_domain_is_expected(client, wallet):
    nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce, domain="127.0.0.1:8000", uri="http://127.0.0.1:8000")
    reply = client.post(
        "/api/v1/auth/verify", json={"message": message, "signature": wallet.sign(message)}
    )
    assert reply.status_code == 401
    error = reply.json()["error"]
    assert error["code"] == "wrong_domain"
    assert "127.0.0.1:8000" in error["message"]
    assert "expects buzzer.test" in error["message"]


def test_the_public_urls_host_signs_in_as_well_as_the_siwe_domain(settings, wallet):
    local = settings.model_copy(
        update={
            "siwe_domain": "localhost:8000",
            "siwe_uri": "http://localhost:8000",
            "public_base_url": "http://127.0.0.1:8000",
        }
    )
    with TestClient(create_app(local)) as client:
        client.app.state.redis.flushdb()
        for host in ("localhost:8000", "127.0.0.1:8000"):
            nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
            message = wallet.message(nonce, domain=host, uri=f"http://{host}")
            reply = client.post(
                "/api/v1/auth/verify",
                json={"message": message, "signature": wallet.sign(message)},
            )
            assert reply.status_code == 200, (host, reply.text)
        nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
        message = wallet.message(nonce, domain="evil.example:8000", uri="http://127.0.0.1:8000")
        reply = client.post(
            "/api/v1/auth/verify", json={"message": message, "signature": wallet.sign(message)}
        )
        assert reply.json()["error"]["code"] == "wrong_domain"
        assert "localhost:8000 or 127.0.0.1:8000" in reply.json()["error"]["message"]
