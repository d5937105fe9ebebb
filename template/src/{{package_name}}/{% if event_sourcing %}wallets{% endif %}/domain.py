"""The wallet aggregate: its events, its state, and the commands that decide on them.

Amounts are integer minor units (cents): exact, and the same in JSON and in SQL.
"""

from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from ..core.errors import ConflictError
from ..events.domain import AggregateKind, DomainEvent, EventTypes


class WalletOpened(DomainEvent):
    event_type: ClassVar[str] = "WalletOpened"

    owner: str
    currency: str


class MoneyDeposited(DomainEvent):
    event_type: ClassVar[str] = "MoneyDeposited"

    amount: int
    reference: str | None = None


class MoneyWithdrawn(DomainEvent):
    event_type: ClassVar[str] = "MoneyWithdrawn"

    amount: int
    reference: str | None = None


class WalletClosed(DomainEvent):
    event_type: ClassVar[str] = "WalletClosed"


class WalletState(BaseModel):
    model_config = ConfigDict(frozen=True)

    owner: str = ""
    currency: str = ""
    balance: int = 0
    closed: bool = False


class WalletRuleError(ConflictError):
    """A command the wallet's state does not allow (409)."""


class Wallets(AggregateKind[WalletState]):
    aggregate_type: ClassVar[str] = "wallet"
    events: ClassVar[EventTypes] = EventTypes(
        WalletOpened, MoneyDeposited, MoneyWithdrawn, WalletClosed
    )
    state_type = WalletState

    def initial(self) -> WalletState:
        return WalletState()

    def evolve(self, state: WalletState, event: DomainEvent) -> WalletState:
        match event:
            case WalletOpened(owner=owner, currency=currency):
                return state.model_copy(update={"owner": owner, "currency": currency})
            case MoneyDeposited(amount=amount):
                return state.model_copy(update={"balance": state.balance + amount})
            case MoneyWithdrawn(amount=amount):
                return state.model_copy(update={"balance": state.balance - amount})
            case WalletClosed():
                return state.model_copy(update={"closed": True})
        return state


def open_wallet(owner: str, currency: str) -> list[DomainEvent]:
    return [WalletOpened(owner=owner, currency=currency)]


def _open(state: WalletState) -> None:
    if state.closed:
        raise WalletRuleError("the wallet is closed")


def deposit(state: WalletState, amount: int, reference: str | None) -> list[DomainEvent]:
    _open(state)
    return [MoneyDeposited(amount=amount, reference=reference)]


def withdraw(state: WalletState, amount: int, reference: str | None) -> list[DomainEvent]:
    _open(state)
    if amount > state.balance:
        raise WalletRuleError(
            f"insufficient funds: the balance is {state.balance}, the withdrawal {amount}"
        )
    return [MoneyWithdrawn(amount=amount, reference=reference)]


def close(state: WalletState) -> list[DomainEvent]:
    _open(state)
    if state.balance != 0:
        raise WalletRuleError(f"only an empty wallet closes; the balance is {state.balance}")
    return [WalletClosed()]


# A command with its arguments bound: the state in, the events out (or a refusal).
Decision = Callable[[WalletState], list[DomainEvent]]
