"""A small, fast JSON-RPC client: keep-alive HTTP, batches, retries with backoff on transport
faults and transient node errors, and a distinct signal when a log query covers too much (so
the caller shrinks its block range instead of retrying)."""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from observe import metrics

log = logging.getLogger(__name__)

# Phrases nodes use when an eth_getLogs range holds too many results or takes too long.
_TOO_LARGE = (
    "more than",
    "too many",
    "limit exceeded",
    "range is too large",
    "block range",
    "query timeout",
    "response size",
    "exceed",
)


class RpcError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"RPC error {code}: {message}")
        self.code = code
        self.message = message


class RangeTooLarge(RpcError):
    """An eth_getLogs range returned too much or took too long: ask for a smaller one."""


class RpcUnavailable(Exception):
    """The node could not be reached or kept failing after every retry."""


class Rpc:
    def __init__(
        self,
        url: str,
        timeout: float = 15.0,
        retries: int = 8,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
    ) -> None:
        self.url = url
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._ids = itertools.count(1)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"content-type": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def _post(self, payload: Any) -> Any:
        response = self._client.post(self.url, content=json.dumps(payload))
        if response.status_code >= 500 or response.status_code == 429:
            raise httpx.HTTPStatusError(
                f"HTTP {response.status_code}", request=response.request, response=response
            )
        response.raise_for_status()
        return json.loads(response.content)

    def _with_retries(self, payload: Any, what: str, retries: int | None = None) -> Any:
        retries = self.retries if retries is None else retries
        delay = self.backoff
        for attempt in range(retries + 1):
            try:
                return self._post(payload)
            except (httpx.TransportError, httpx.HTTPStatusError, json.JSONDecodeError) as exc:
                metrics.RPC_ERRORS.labels(
                    "transport", what.split(" ", 1)[0]
                ).inc()  # "batch of n": batch
                if attempt == retries:
                    raise RpcUnavailable(
                        f"cannot reach RPC at {self.url} ({what}): {exc}"
                    ) from None
                log.debug("RPC %s failed (%s); retry %d in %.2fs", what, exc, attempt + 1, delay)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")

    def call(self, method: str, params: Sequence[Any] = (), retries: int | None = None) -> Any:
        """One call; transient node errors are retried like transport faults."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            reply = self._with_retries(
                {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)},
                method,
                retries,
            )
            error = reply.get("error")
            if error is None:
                return reply.get("result")
            code, message = int(error.get("code", 0)), str(error.get("message", ""))
            metrics.RPC_ERRORS.labels("node", method).inc()
            too_large = method == "eth_getLogs" and _is_too_large(code, message)
            if too_large and not _single_block(params):
                raise RangeTooLarge(code, message)
            # one block cannot be split further: "too large" for it can only be a passing fault
            if attempt == self.retries or not (too_large or _is_transient(code, message)):
                raise RpcError(code, message)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several calls in one request; falls back to single calls if any item failed."""
        if not calls:
            return []
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": list(params)}
            for i, (method, params) in enumerate(calls)
        ]
        reply = self._with_retries(payload, f"batch of {len(calls)}")
        if isinstance(reply, list) and len(reply) == len(calls):
            by_id = {item.get("id"): item for item in reply}
            if all(i in by_id and "error" not in by_id[i] for i in range(len(calls))):
                return [by_id[i].get("result") for i in range(len(calls))]
        return [self.call(method, params) for method, params in calls]

    # ---------------------------------------------------------------- typed helpers

    def chain_id(self) -> int:
        """The chain's id; asked first, so an unreachable node is reported within a second."""
        return int(self.call("eth_chainId", retries=2), 16)

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def block(self, number: int | str) -> dict[str, Any] | None:
        tag = hex(number) if isinstance(number, int) else number
        result: dict[str, Any] | None = self.call("eth_getBlockByNumber", [tag, False])
        return result

    def blocks(self, numbers: Sequence[int]) -> list[dict[str, Any] | None]:
        return self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])

    def finalized_block(self) -> int | None:
        """The node's `finalized` block, or None where the tag is not supported."""
        try:
            block = self.block("finalized")
        except RpcError:
            return None
        return int(block["number"], 16) if block else None

    def get_logs(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[Any]:
        result: list[Any] = self.call(
            "eth_getLogs",
            [{"address": list(addresses), "fromBlock": hex(from_block), "toBlock": hex(to_block)}],
        )
        return result


def _single_block(params: Sequence[Any]) -> bool:
    query = params[0] if params and isinstance(params[0], dict) else {}
    return "blockHash" in query or (
        "fromBlock" in query and query.get("fromBlock") == query.get("toBlock")
    )


def _is_too_large(code: int, message: str) -> bool:
    lowered = message.lower()
    return code == -32005 or any(phrase in lowered for phrase in _TOO_LARGE)


def _is_transient(code: int, message: str) -> bool:
    lowered = message.lower()
    return (
        code in (-32000, -32603, -32005, 429)
        or "header not found" in lowered
        or "timeout" in lowered
        or "unknown block" in lowered
        or "try again" in lowered
    )
