"""Request and response bodies of the sign-in routes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.core.fields import Body


class NonceOut(BaseModel):
    nonce: str
    expires_in: int = Field(description="seconds the nonce stays valid")


class VerifyIn(Body):
    message: str = Field(description="the EIP-4361 message the wallet signed")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]+$", max_length=2 + 2 * 65 * 4)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    wallet: str


class WalletOut(BaseModel):
    wallet: str
