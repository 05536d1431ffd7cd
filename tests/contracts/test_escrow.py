"""PaymentEscrow: deposits, delayed withdrawals and per-epoch spend, path by path."""

from __future__ import annotations

import ape
import pytest

from tests.contracts.conftest import ENDED, FEE_BPS, USDC, WITHDRAW_DELAY, ZERO, advance


def publisher_share(amount: int) -> int:
    return amount * (10_000 - FEE_BPS) // 10_000


# ---------------------------------------------------------------- constructor


@pytest.mark.parametrize(
    ("fee_bps", "treasury_is_zero", "delay", "reason"),
    [
        (5_001, False, 0, "escrow: fee too high"),
        (1_500, True, 0, "escrow: zero treasury"),
        (1_500, False, 30 * 86_400 + 1, "escrow: delay too long"),
    ],
)
def test_constructor_rejects_unsafe_settings(
    project, admin, campaign_registry, payout, treasury, fee_bps, treasury_is_zero, delay, reason
):
    with ape.reverts(reason):
        project.PaymentEscrow.deploy(
            campaign_registry,
            payout,
            ZERO if treasury_is_zero else treasury,
            delay,
            fee_bps,
            sender=admin,
        )


# ---------------------------------------------------------------- deposit


def test_deposit_erc20_credits_the_campaign(escrow, usdc, advertiser, mint_usdc, register_campaign):
    campaign_id = register_campaign(advertiser, token=usdc.address)
    mint_usdc(advertiser, 250 * USDC)
    usdc.approve(escrow, 250 * USDC, sender=advertiser)

    tx = escrow.deposit(campaign_id, 250 * USDC, usdc, sender=advertiser)

    assert tx.events.filter(usdc.Transfer) == [
        usdc.Transfer(sender=advertiser, receiver=escrow, value=250 * USDC)
    ]
    assert tx.events.filter(escrow.Deposited) == [
        escrow.Deposited(campaign_id=campaign_id, token=usdc, sender=advertiser, amount=250 * USDC)
    ]
    assert escrow.get_balance(campaign_id, usdc) == 250 * USDC
    assert usdc.balanceOf(escrow) == 250 * USDC
    assert usdc.balanceOf(advertiser) == 0
    ledger = escrow.get_ledger(campaign_id)
    assert (ledger.token, ledger.deposited, ledger.withdrawn, ledger.spent) == (
        usdc.address,
        250 * USDC,
        0,
        0,
    )


def test_deposit_eth_credits_the_value_sent(escrow, advertiser, register_campaign):
    campaign_id = register_campaign(advertiser, token=ZERO)
    before = advertiser.balance

    tx = escrow.deposit(campaign_id, 10**18, ZERO, value=10**18, sender=advertiser)

    assert tx.events == [
        escrow.Deposited(campaign_id=campaign_id, token=ZERO, sender=advertiser, amount=10**18)
    ]
    assert escrow.get_balance(campaign_id, ZERO) == 10**18
    assert escrow.balance == 10**18
    assert advertiser.balance <= before - 10**18


def test_deposits_accumulate(escrow, usdc, advertiser, funded_campaign, mint_usdc):
    campaign_id = funded_campaign(advertiser, 5 * USDC)
    mint_usdc(advertiser, 7 * USDC)
    usdc.approve(escrow, 7 * USDC, sender=advertiser)
    escrow.deposit(campaign_id, 7 * USDC, usdc, sender=advertiser)
    assert escrow.get_balance(campaign_id, usdc) == 12 * USDC


def test_deposit_reverts_for_unknown_campaign(escrow, advertiser):
    with ape.reverts("escrow: unknown campaign"):
        escrow.deposit(99, 1, ZERO, value=1, sender=advertiser)


def test_deposit_reverts_for_someone_elses_campaign(
    escrow, advertiser, other_advertiser, register_campaign
):
    campaign_id = register_campaign(advertiser, token=ZERO)
    with ape.reverts("escrow: caller is not advertiser"):
        escrow.deposit(campaign_id, 1, ZERO, value=1, sender=other_advertiser)


def test_deposit_reverts_in_another_token(escrow, usdc, advertiser, register_campaign):
    campaign_id = register_campaign(advertiser, token=usdc.address)
    with ape.reverts("escrow: wrong token for campaign"):
        escrow.deposit(campaign_id, 1, ZERO, value=1, sender=advertiser)


def test_deposit_reverts_for_token_not_allowed(
    project, escrow, admin, advertiser, register_campaign
):
    token = project.HostileToken.deploy(sender=admin)
    token.mint(advertiser, 100, sender=admin)
    token.approve(escrow, 100, sender=advertiser)
    campaign_id = register_campaign(advertiser, token=token.address)
    with ape.reverts("escrow: token not allowed"):
        escrow.deposit(campaign_id, 100, token, sender=advertiser)


def test_deposit_reverts_for_ended_campaign(
    escrow, campaign_registry, advertiser, register_campaign
):
    campaign_id = register_campaign(advertiser, token=ZERO)
    campaign_registry.update_status(campaign_id, ENDED, sender=advertiser)
    with ape.reverts("escrow: campaign ended"):
        escrow.deposit(campaign_id, 1, ZERO, value=1, sender=advertiser)


def test_deposit_reverts_for_zero_amount(escrow, advertiser, register_campaign):
    campaign_id = register_campaign(advertiser, token=ZERO)
    with ape.reverts("escrow: zero amount"):
        escrow.deposit(campaign_id, 0, ZERO, sender=advertiser)


def test_deposit_reverts_when_value_differs_from_amount(escrow, advertiser, register_campaign):
    campaign_id = register_campaign(advertiser, token=ZERO)
    with ape.reverts("escrow: value mismatch"):
        escrow.deposit(campaign_id, 2, ZERO, value=1, sender=advertiser)


def test_deposit_reverts_when_eth_sent_with_token(
    escrow, usdc, advertiser, mint_usdc, register_campaign
):
    campaign_id = register_campaign(advertiser, token=usdc.address)
    mint_usdc(advertiser, 5)
    usdc.approve(escrow, 5, sender=advertiser)
    with ape.reverts("escrow: unexpected value"):
        escrow.deposit(campaign_id, 5, usdc, value=1, sender=advertiser)


def test_deposit_reverts_without_allowance(escrow, usdc, advertiser, mint_usdc, register_campaign):
    campaign_id = register_campaign(advertiser, token=usdc.address)
    mint_usdc(advertiser, 5)
    with ape.reverts():
        escrow.deposit(campaign_id, 5, usdc, sender=advertiser)
    assert escrow.get_balance(campaign_id, usdc) == 0


def test_deposit_reverts_while_paused(escrow, guardian, advertiser, register_campaign):
    campaign_id = register_campaign(advertiser, token=ZERO)
    escrow.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        escrow.deposit(campaign_id, 1, ZERO, value=1, sender=advertiser)


# ---------------------------------------------------------------- withdraw requests


def test_request_withdraw_records_amount_and_maturity(escrow, usdc, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)

    tx = escrow.request_withdraw(campaign_id, usdc, 40 * USDC, sender=advertiser)

    available_at = ape.chain.blocks.head.timestamp + WITHDRAW_DELAY
    assert tx.events == [
        escrow.WithdrawRequested(
            campaign_id=campaign_id, token=usdc, amount=40 * USDC, available_at=available_at
        )
    ]
    request = escrow.get_withdraw_request(campaign_id)
    assert (request.amount, request.available_at) == (40 * USDC, available_at)
    assert escrow.has_pending_withdraw(campaign_id)
    assert escrow.get_balance(campaign_id, usdc) == 100 * USDC


def test_a_new_request_replaces_the_old_and_restarts_the_clock(
    escrow, usdc, advertiser, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 40 * USDC, sender=advertiser)
    advance(WITHDRAW_DELAY // 2)
    escrow.request_withdraw(campaign_id, usdc, 60 * USDC, sender=advertiser)
    advance(WITHDRAW_DELAY // 2 + 1)
    with ape.reverts("escrow: withdraw delay not over"):
        escrow.withdraw(campaign_id, usdc, sender=advertiser)
    assert escrow.get_withdraw_request(campaign_id).amount == 60 * USDC


@pytest.mark.parametrize(
    ("amount_usdc", "reason"),
    [(0, "escrow: zero amount"), (101, "escrow: amount above balance")],
)
def test_request_withdraw_rejects_bad_amounts(
    escrow, usdc, advertiser, funded_campaign, amount_usdc, reason
):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    with ape.reverts(reason):
        escrow.request_withdraw(campaign_id, usdc, amount_usdc * USDC, sender=advertiser)
    assert not escrow.has_pending_withdraw(campaign_id)


def test_request_withdraw_rejects_wrong_token(escrow, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    with ape.reverts("escrow: wrong token for campaign"):
        escrow.request_withdraw(campaign_id, ZERO, USDC, sender=advertiser)


def test_request_withdraw_rejects_other_wallets(
    escrow, usdc, advertiser, other_advertiser, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    with ape.reverts("escrow: caller is not advertiser"):
        escrow.request_withdraw(campaign_id, usdc, USDC, sender=other_advertiser)
    with ape.reverts("escrow: unknown campaign"):
        escrow.request_withdraw(777, usdc, USDC, sender=advertiser)


def test_request_withdraw_rejected_while_paused(
    escrow, usdc, guardian, advertiser, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        escrow.request_withdraw(campaign_id, usdc, USDC, sender=advertiser)


def test_cancel_withdraw_lets_the_campaign_serve_again(escrow, usdc, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 40 * USDC, sender=advertiser)

    tx = escrow.cancel_withdraw(campaign_id, usdc, sender=advertiser)

    assert tx.events == [escrow.WithdrawCancelled(campaign_id=campaign_id, token=usdc)]
    assert not escrow.has_pending_withdraw(campaign_id)
    advance(WITHDRAW_DELAY)
    with ape.reverts("escrow: no pending withdraw"):
        escrow.withdraw(campaign_id, usdc, sender=advertiser)


def test_cancel_withdraw_needs_a_request_and_the_owner(
    escrow, usdc, advertiser, other_advertiser, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    with ape.reverts("escrow: no pending withdraw"):
        escrow.cancel_withdraw(campaign_id, usdc, sender=advertiser)
    escrow.request_withdraw(campaign_id, usdc, USDC, sender=advertiser)
    with ape.reverts("escrow: caller is not advertiser"):
        escrow.cancel_withdraw(campaign_id, usdc, sender=other_advertiser)


# ---------------------------------------------------------------- withdraw


def test_withdraw_pays_after_the_delay(escrow, usdc, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 30 * USDC, sender=advertiser)
    advance(WITHDRAW_DELAY)

    tx = escrow.withdraw(campaign_id, usdc, sender=advertiser)

    assert tx.events.filter(escrow.Withdrawn) == [
        escrow.Withdrawn(
            campaign_id=campaign_id, token=usdc, recipient=advertiser, amount=30 * USDC
        )
    ]
    assert usdc.balanceOf(advertiser) == 30 * USDC
    assert escrow.get_balance(campaign_id, usdc) == 70 * USDC
    assert not escrow.has_pending_withdraw(campaign_id)
    assert escrow.get_ledger(campaign_id).withdrawn == 30 * USDC


def test_withdraw_eth(escrow, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 3 * 10**18, token=ZERO)
    escrow.request_withdraw(campaign_id, ZERO, 10**18, sender=advertiser)
    advance(WITHDRAW_DELAY)
    before = advertiser.balance
    tx = escrow.withdraw(campaign_id, ZERO, sender=advertiser)
    assert advertiser.balance == before + 10**18 - tx.total_fees_paid
    assert escrow.balance == 2 * 10**18


def test_withdraw_before_the_delay_reverts(escrow, usdc, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 30 * USDC, sender=advertiser)
    advance(WITHDRAW_DELAY - 10)
    with ape.reverts("escrow: withdraw delay not over"):
        escrow.withdraw(campaign_id, usdc, sender=advertiser)
    assert usdc.balanceOf(advertiser) == 0


def test_withdraw_without_request_reverts(escrow, usdc, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    with ape.reverts("escrow: no pending withdraw"):
        escrow.withdraw(campaign_id, usdc, sender=advertiser)


def test_withdraw_by_someone_else_reverts(
    escrow, usdc, advertiser, other_advertiser, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 30 * USDC, sender=advertiser)
    advance(WITHDRAW_DELAY)
    with ape.reverts("escrow: caller is not advertiser"):
        escrow.withdraw(campaign_id, usdc, sender=other_advertiser)


def test_withdraw_in_wrong_token_reverts(escrow, usdc, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 30 * USDC, sender=advertiser)
    advance(WITHDRAW_DELAY)
    with ape.reverts("escrow: wrong token for campaign"):
        escrow.withdraw(campaign_id, ZERO, sender=advertiser)


def test_withdraw_while_paused_reverts(escrow, usdc, guardian, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 30 * USDC, sender=advertiser)
    advance(WITHDRAW_DELAY)
    escrow.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        escrow.withdraw(campaign_id, usdc, sender=advertiser)


def test_withdraw_front_running_settlement_only_gets_what_is_left(
    escrow, usdc, advertiser, settler, funded_campaign
):
    """The advertiser asks for everything; settlement of spend already delivered lands
    during the delay and is paid first; the withdrawal gets only the rest."""
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 100 * USDC, sender=advertiser)
    with ape.reverts("escrow: withdraw delay not over"):
        escrow.withdraw(campaign_id, usdc, sender=advertiser)
    escrow.spend_batch(1, [campaign_id], [35 * USDC], sender=settler)
    advance(WITHDRAW_DELAY)

    tx = escrow.withdraw(campaign_id, usdc, sender=advertiser)

    assert tx.return_value in (None, 65 * USDC)
    assert usdc.balanceOf(advertiser) == 65 * USDC
    ledger = escrow.get_ledger(campaign_id)
    assert ledger.withdrawn + ledger.spent == ledger.deposited == 100 * USDC


def test_withdraw_after_everything_was_spent_reverts(
    escrow, usdc, advertiser, settler, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 10 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 10 * USDC, sender=advertiser)
    escrow.spend_batch(1, [campaign_id], [10 * USDC], sender=settler)
    advance(WITHDRAW_DELAY)
    with ape.reverts("escrow: nothing to withdraw"):
        escrow.withdraw(campaign_id, usdc, sender=advertiser)


@pytest.mark.parametrize("withdraw_first", [True, False])
def test_withdraw_and_settle_in_either_order_never_exceed_deposit(
    escrow, usdc, advertiser, settler, funded_campaign, withdraw_first
):
    campaign_id = funded_campaign(advertiser, 50 * USDC)
    escrow.request_withdraw(campaign_id, usdc, 40 * USDC, sender=advertiser)
    advance(WITHDRAW_DELAY)
    if withdraw_first:
        escrow.withdraw(campaign_id, usdc, sender=advertiser)
        with ape.reverts("escrow: spend above balance"):
            escrow.spend_batch(1, [campaign_id], [20 * USDC], sender=settler)
        escrow.spend_batch(1, [campaign_id], [10 * USDC], sender=settler)
    else:
        escrow.spend_batch(1, [campaign_id], [20 * USDC], sender=settler)
        escrow.withdraw(campaign_id, usdc, sender=advertiser)
    ledger = escrow.get_ledger(campaign_id)
    assert ledger.withdrawn + ledger.spent <= ledger.deposited
    assert ledger.withdrawn + ledger.spent == 50 * USDC
    assert usdc.balanceOf(escrow) == 0


# ---------------------------------------------------------------- spend_batch


def test_spend_batch_splits_85_15_and_funds_the_payout(
    escrow, payout, usdc, advertiser, settler, treasury, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    amount = 10 * USDC + 7  # an amount whose 85% is not whole: the dust goes to the fee
    share = publisher_share(amount)
    fee = amount - share

    tx = escrow.spend_batch(3, [campaign_id], [amount], sender=settler)

    assert tx.events.filter(escrow.Spent) == [
        escrow.Spent(
            epoch=3,
            campaign_id=campaign_id,
            token=usdc,
            amount=amount,
            publisher_share=share,
            fee=fee,
        )
    ]
    assert tx.events.filter(escrow.EpochSpent) == [escrow.EpochSpent(epoch=3, campaigns=1)]
    assert tx.events.filter(payout.Funded) == [
        payout.Funded(token=usdc, sender=escrow, amount=share, total_funded=share)
    ]
    assert share == 8_500_005 and fee == 1_500_002
    assert usdc.balanceOf(payout) == share
    assert usdc.balanceOf(treasury) == fee
    assert payout.total_funded(usdc) == share
    assert escrow.get_balance(campaign_id, usdc) == 100 * USDC - amount
    assert escrow.get_total_spent(campaign_id, usdc) == amount
    assert escrow.latest_epoch() == 3
    assert escrow.get_ledger(campaign_id).last_spent_epoch == 3


def test_spend_batch_handles_eth_and_tokens_together(
    escrow, payout, usdc, advertiser, other_advertiser, settler, treasury, funded_campaign
):
    token_campaign = funded_campaign(advertiser, 100 * USDC)
    eth_campaign = funded_campaign(other_advertiser, 10**18, token=ZERO)
    second_token_campaign = funded_campaign(other_advertiser, 50 * USDC)
    treasury_eth = treasury.balance

    escrow.spend_batch(
        1,
        [token_campaign, eth_campaign, second_token_campaign],
        [20 * USDC, 10**17, 5 * USDC],
        sender=settler,
    )

    assert payout.total_funded(usdc) == publisher_share(20 * USDC) + publisher_share(5 * USDC)
    assert payout.total_funded(ZERO) == publisher_share(10**17)
    assert payout.balance == publisher_share(10**17)
    assert treasury.balance == treasury_eth + 10**17 - publisher_share(10**17)
    assert usdc.balanceOf(treasury) == 25 * USDC - payout.total_funded(usdc)
    assert list(payout.funded_tokens(i) for i in range(2)) == [usdc.address, ZERO]


def test_an_epoch_may_be_split_over_batches_of_different_campaigns(
    escrow, usdc, advertiser, settler, funded_campaign
):
    first = funded_campaign(advertiser, 10 * USDC)
    second = funded_campaign(advertiser, 10 * USDC)
    escrow.spend_batch(1, [first], [USDC], sender=settler)
    escrow.spend_batch(1, [second], [USDC], sender=settler)
    assert escrow.get_total_spent(first, usdc) == escrow.get_total_spent(second, usdc) == USDC


def test_replayed_batch_reverts(escrow, usdc, advertiser, settler, funded_campaign):
    campaign_id = funded_campaign(advertiser, 10 * USDC)
    escrow.spend_batch(1, [campaign_id], [USDC], sender=settler)
    with ape.reverts("escrow: campaign already spent in epoch"):
        escrow.spend_batch(1, [campaign_id], [USDC], sender=settler)
    assert escrow.get_total_spent(campaign_id, usdc) == USDC


def test_campaign_twice_in_one_batch_reverts(escrow, usdc, advertiser, settler, funded_campaign):
    campaign_id = funded_campaign(advertiser, 10 * USDC)
    with ape.reverts("escrow: campaign already spent in epoch"):
        escrow.spend_batch(1, [campaign_id, campaign_id], [USDC, USDC], sender=settler)
    assert escrow.get_total_spent(campaign_id, usdc) == 0


def test_older_epoch_after_newer_reverts(escrow, advertiser, settler, funded_campaign):
    first = funded_campaign(advertiser, 10 * USDC)
    second = funded_campaign(advertiser, 10 * USDC)
    escrow.spend_batch(5, [first], [USDC], sender=settler)
    with ape.reverts("escrow: epoch already closed"):
        escrow.spend_batch(4, [second], [USDC], sender=settler)
    with ape.reverts("escrow: epoch already closed"):
        escrow.spend_batch(0, [second], [USDC], sender=settler)


def test_spend_above_balance_reverts(escrow, usdc, advertiser, settler, funded_campaign):
    campaign_id = funded_campaign(advertiser, 10 * USDC)
    with ape.reverts("escrow: spend above balance"):
        escrow.spend_batch(1, [campaign_id], [10 * USDC + 1], sender=settler)
    escrow.spend_batch(1, [campaign_id], [10 * USDC], sender=settler)
    assert escrow.get_balance(campaign_id, usdc) == 0


def test_spend_of_an_unfunded_campaign_reverts(escrow, advertiser, settler, register_campaign):
    campaign_id = register_campaign(advertiser, token=ZERO)
    with ape.reverts("escrow: spend above balance"):
        escrow.spend_batch(1, [campaign_id], [1], sender=settler)


@pytest.mark.parametrize(
    ("ids", "amounts", "reason"),
    [
        ([1], [], "escrow: length mismatch"),
        ([], [], "escrow: empty batch"),
        ([1], [0], "escrow: zero spend"),
    ],
)
def test_spend_batch_rejects_malformed_batches(
    escrow, advertiser, settler, funded_campaign, ids, amounts, reason
):
    funded_campaign(advertiser, 10 * USDC)
    with ape.reverts(reason):
        escrow.spend_batch(1, ids, amounts, sender=settler)


def test_spend_batch_by_non_settler_or_while_paused_reverts(
    escrow, advertiser, settler, guardian, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 10 * USDC)
    with ape.reverts("escrow: caller is not settler"):
        escrow.spend_batch(1, [campaign_id], [USDC], sender=advertiser)
    escrow.pause(sender=guardian)
    with ape.reverts("guard: paused"):
        escrow.spend_batch(1, [campaign_id], [USDC], sender=settler)


# ---------------------------------------------------------------- admin


def test_set_token_allowed(project, escrow, admin):
    token = project.HostileToken.deploy(sender=admin)
    tx = escrow.set_token_allowed(token, True, sender=admin)
    assert tx.events == [escrow.TokenAllowed(token=token, allowed=True)]
    assert escrow.allowed_tokens(token)
    escrow.set_token_allowed(token, False, sender=admin)
    assert not escrow.allowed_tokens(token)


def test_set_token_allowed_rejects_non_contracts(escrow, admin, stranger):
    with ape.reverts("escrow: token is not a contract"):
        escrow.set_token_allowed(stranger, True, sender=admin)


def test_set_treasury(escrow, admin, treasury, stranger):
    tx = escrow.set_treasury(stranger, sender=admin)
    assert tx.events == [escrow.TreasuryUpdated(previous_treasury=treasury, new_treasury=stranger)]
    assert escrow.treasury() == stranger
    with ape.reverts("escrow: zero treasury"):
        escrow.set_treasury(ZERO, sender=admin)


def test_changing_the_delay_does_not_move_pending_requests(
    escrow, usdc, admin, advertiser, funded_campaign
):
    campaign_id = funded_campaign(advertiser, 10 * USDC)
    escrow.request_withdraw(campaign_id, usdc, USDC, sender=advertiser)
    tx = escrow.set_withdraw_delay(10 * WITHDRAW_DELAY, sender=admin)
    assert tx.events == [
        escrow.WithdrawDelayUpdated(previous_delay=WITHDRAW_DELAY, new_delay=10 * WITHDRAW_DELAY)
    ]
    advance(WITHDRAW_DELAY)
    escrow.withdraw(campaign_id, usdc, sender=advertiser)
    assert usdc.balanceOf(advertiser) == USDC
    with ape.reverts("escrow: delay too long"):
        escrow.set_withdraw_delay(30 * 86_400 + 1, sender=admin)


def test_views_for_another_token_are_zero(escrow, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 10 * USDC)
    assert escrow.get_balance(campaign_id, ZERO) == 0
    assert escrow.get_total_spent(campaign_id, ZERO) == 0


def test_cancel_withdraw_in_wrong_token_reverts(escrow, usdc, advertiser, funded_campaign):
    campaign_id = funded_campaign(advertiser, 100 * USDC)
    escrow.request_withdraw(campaign_id, usdc, USDC, sender=advertiser)
    with ape.reverts("escrow: wrong token for campaign"):
        escrow.cancel_withdraw(campaign_id, ZERO, sender=advertiser)
    assert escrow.has_pending_withdraw(campaign_id)


def test_withdraw_request_on_unfunded_campaign_says_above_balance(
    escrow, usdc, advertiser, register_campaign
):
    campaign_id = register_campaign(advertiser, token=usdc.address)
    with ape.reverts("escrow: amount above balance"):
        escrow.request_withdraw(campaign_id, usdc, USDC, sender=advertiser)
