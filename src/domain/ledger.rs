//! The ledger's vocabulary: accounts, entries and balanced postings (DESIGN §8).
//!
//! Double entry: every movement of money is a [`Posting`], a set of
//! [`Entry`]s whose debits equal its credits in every currency. The type
//! refuses to exist otherwise, so the store can only ever be handed a
//! balanced posting, and a posting read back from the database is checked
//! again on the way out.
//!
//! # Sign convention
//!
//! An account's balance is `debits − credits`, whatever its kind. Assets
//! (`provider_clearing`: what a provider owes us; `provider_fees`: what
//! providers kept) grow with debits and read positive; liabilities and
//! income (`customer_wallet`: what we hold for a customer;
//! `merchant_revenue`; `wallet_funding`) grow with credits and read
//! negative. One rule for every account is what makes "the balances of a
//! currency sum to zero" a check anyone can run. A wallet's spendable amount
//! is therefore `credits − debits`, and it may never be negative.
//!
//! # Refunds and the provider's fee
//!
//! A card refund of R reverses R between revenue and clearing only (debit
//! `merchant_revenue`, credit `provider_clearing`); the provider's fee is
//! not returned. Why: Stripe and Adyen keep the processing fee of a refunded
//! charge, and so does the sandbox (its record keeps a charge's `fee` after a
//! refund, DESIGN §7), so booking a fee return would invent money that
//! reconciliation would then report missing. A pro rata return would also
//! need rounding, and the rounded shares of several partial refunds do not
//! add up to the fee. With this rule a refund needs no knowledge of the
//! original fee; a full refund brings `merchant_revenue` back to zero,
//! leaves the fee in `provider_fees`, and leaves `provider_clearing` at
//! minus the fee: the provider takes the whole amount back from what it pays
//! out, so the fee is what the refund cost.

use super::TransactionId;
use super::{Amount, AmountError, Currency, MerchantId, PaymentId, RefundId, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Fewest entries in a posting: one debit and one credit.
pub const MIN_POSTING_ENTRIES: usize = 2;

/// What an account is for; the part of its name before the `:`.
///
/// Declared in the alphabetical order of the names, so sorting accounts by
/// value and by name agree (the store locks balance rows in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountKind {
    /// What the engine holds for one customer of one merchant (a liability):
    /// `customer_wallet:{merchant}/{customer}`.
    CustomerWallet,
    /// What a merchant earned: `merchant_revenue:{merchant}`.
    MerchantRevenue,
    /// What a provider owes us for captured charges: `provider_clearing:{provider}`.
    ProviderClearing,
    /// What a provider kept as fees: `provider_fees:{provider}`.
    ProviderFees,
    /// Where a merchant's wallet top-ups come from: `wallet_funding:{merchant}`.
    WalletFunding,
}

impl AccountKind {
    const ALL: [AccountKind; 5] = [
        AccountKind::CustomerWallet,
        AccountKind::MerchantRevenue,
        AccountKind::ProviderClearing,
        AccountKind::ProviderFees,
        AccountKind::WalletFunding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::CustomerWallet => "customer_wallet",
            AccountKind::MerchantRevenue => "merchant_revenue",
            AccountKind::ProviderClearing => "provider_clearing",
            AccountKind::ProviderFees => "provider_fees",
            AccountKind::WalletFunding => "wallet_funding",
        }
    }

    fn parse(text: &str) -> Option<AccountKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Whether the owner part names a merchant (first, for wallets).
    fn merchant_owned(self) -> bool {
        !matches!(
            self,
            AccountKind::ProviderClearing | AccountKind::ProviderFees
        )
    }
}

/// Why a name is not a valid [`Account`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("an account is named kind:owner")]
    NoKind,
    #[error("unknown account kind {0:?}")]
    UnknownKind(String),
    #[error("an account's owner must be non-empty and without control characters")]
    BadOwner,
    #[error("a wallet is named customer_wallet:merchant/customer, with no '/' in the merchant")]
    BadWalletOwner,
}

/// A ledger account, named `kind:owner` so a balance reads on its own.
///
/// Exists so that an account name is built and checked in one place: every
/// value displays as a name that parses back to the same value, which is
/// what the database stores and the API shows and filters on. A wallet's
/// owner is `merchant/customer`, split at the first `/`, so a merchant name
/// with a `/` is refused (a customer id may hold any printable text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Account {
    kind: AccountKind,
    owner: String,
}

impl Account {
    pub fn provider_clearing(provider: &str) -> Result<Account, AccountError> {
        Account::with_owner(AccountKind::ProviderClearing, provider)
    }

    pub fn provider_fees(provider: &str) -> Result<Account, AccountError> {
        Account::with_owner(AccountKind::ProviderFees, provider)
    }

    pub fn merchant_revenue(merchant: &MerchantId) -> Result<Account, AccountError> {
        Account::with_owner(AccountKind::MerchantRevenue, merchant.as_str())
    }

    pub fn wallet_funding(merchant: &MerchantId) -> Result<Account, AccountError> {
        Account::with_owner(AccountKind::WalletFunding, merchant.as_str())
    }

    pub fn customer_wallet(merchant: &MerchantId, customer: &str) -> Result<Account, AccountError> {
        if merchant.as_str().contains('/') {
            return Err(AccountError::BadWalletOwner);
        }
        Account::with_owner(
            AccountKind::CustomerWallet,
            &format!("{}/{customer}", merchant.as_str()),
        )
    }

    /// The account `kind:owner`, once `owner` is checked for `kind`.
    fn with_owner(kind: AccountKind, owner: &str) -> Result<Account, AccountError> {
        check_owner_text(owner)?;
        if kind == AccountKind::CustomerWallet {
            match owner.split_once('/') {
                Some((merchant, customer)) if !merchant.is_empty() && !customer.is_empty() => {}
                _ => return Err(AccountError::BadWalletOwner),
            }
        }
        Ok(Account {
            kind,
            owner: owner.to_string(),
        })
    }

    pub fn kind(&self) -> AccountKind {
        self.kind
    }

    /// Everything after `kind:`.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The merchant the account belongs to; `None` for provider accounts,
    /// which every merchant's charges share.
    pub fn merchant(&self) -> Option<MerchantId> {
        if !self.kind.merchant_owned() {
            return None;
        }
        let merchant = match self.owner.split_once('/') {
            Some((merchant, _)) if self.kind == AccountKind::CustomerWallet => merchant,
            _ => self.owner.as_str(),
        };
        Some(MerchantId::new(merchant))
    }

    /// The customer of a wallet account.
    pub fn customer(&self) -> Option<&str> {
        match self.kind {
            AccountKind::CustomerWallet => self.owner.split_once('/').map(|(_, c)| c),
            _ => None,
        }
    }

    /// Whether debits of this account must never exceed its credits.
    pub fn is_customer_wallet(&self) -> bool {
        self.kind == AccountKind::CustomerWallet
    }
}

/// Owners are stored as text and shown in JSON: no control characters
/// (PostgreSQL's text cannot even hold NUL), and never empty.
fn check_owner_text(owner: &str) -> Result<(), AccountError> {
    if owner.is_empty() || owner.chars().any(char::is_control) {
        return Err(AccountError::BadOwner);
    }
    Ok(())
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.owner)
    }
}

impl FromStr for Account {
    type Err = AccountError;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let (kind, owner) = name.split_once(':').ok_or(AccountError::NoKind)?;
        let kind =
            AccountKind::parse(kind).ok_or_else(|| AccountError::UnknownKind(kind.to_string()))?;
        Account::with_owner(kind, owner)
    }
}

impl Serialize for Account {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Account {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which side of an account an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Debit,
    Credit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "debit",
            Direction::Credit => "credit",
        }
    }

    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "debit" => Some(Direction::Debit),
            "credit" => Some(Direction::Credit),
            _ => None,
        }
    }
}

/// One line of a posting: an amount on one side of one account.
///
/// The amount is an [`Amount`], so a zero or negative line cannot exist; a
/// movement the other way is the other [`Direction`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub account: Account,
    pub direction: Direction,
    pub amount: Amount,
    pub currency: Currency,
}

/// Why money moved; decides which references a posting carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostingKind {
    /// A succeeded payment: names the payment, one per payment.
    Payment,
    /// A succeeded refund: names the refund and its payment, one per refund.
    Refund,
    /// Money put into a customer's wallet: names neither.
    WalletTopUp,
}

impl PostingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PostingKind::Payment => "payment",
            PostingKind::Refund => "refund",
            PostingKind::WalletTopUp => "wallet_top_up",
        }
    }

    pub fn parse(text: &str) -> Option<PostingKind> {
        match text {
            "payment" => Some(PostingKind::Payment),
            "refund" => Some(PostingKind::Refund),
            "wallet_top_up" => Some(PostingKind::WalletTopUp),
            _ => None,
        }
    }
}

/// Why a set of entries is not a valid [`Posting`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("a posting needs at least {MIN_POSTING_ENTRIES} entries")]
    TooFewEntries,
    #[error("unbalanced in {currency}: debits {debits}, credits {credits}")]
    Unbalanced {
        currency: Currency,
        debits: i64,
        credits: i64,
    },
    #[error("the entries' totals overflow")]
    Overflow,
    #[error("a {0} posting names the wrong payment or refund references")]
    WrongReferences(&'static str),
    #[error("one posting may touch the accounts of one merchant only")]
    MixedMerchants,
    #[error("a provider fee cannot be negative (got {0})")]
    NegativeFee(i64),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Amount(#[from] AmountError),
}

/// What a [`Posting`] is made of, before it is checked.
#[derive(Debug, Clone)]
pub struct PostingParts {
    pub id: TransactionId,
    pub kind: PostingKind,
    pub payment_id: Option<PaymentId>,
    pub refund_id: Option<RefundId>,
    pub entries: Vec<Entry>,
    pub created_at: Timestamp,
}

/// One ledger transaction: entries that balance in every currency.
///
/// Exists so that an unbalanced set of entries cannot be built, whether by
/// the builders below, by a future caller, or from a database row someone
/// edited: [`Posting::new`] is the only way in. Its fields are private for
/// the same reason. Serialized as the API shows it (DESIGN §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Posting {
    id: TransactionId,
    payment_id: Option<PaymentId>,
    refund_id: Option<RefundId>,
    kind: PostingKind,
    entries: Vec<Entry>,
    created_at: Timestamp,
    /// Derived from the entries; the store keeps it to scope reads.
    #[serde(skip)]
    merchant_id: Option<MerchantId>,
}

impl Posting {
    /// Checks `parts`: references fit the kind, at least [`MIN_POSTING_ENTRIES`]
    /// entries, debits equal credits per currency (checked sums), and at
    /// most one merchant's accounts.
    pub fn new(parts: PostingParts) -> Result<Posting, LedgerError> {
        check_references(parts.kind, parts.payment_id, parts.refund_id)?;
        if parts.entries.len() < MIN_POSTING_ENTRIES {
            return Err(LedgerError::TooFewEntries);
        }
        check_balanced(&parts.entries)?;
        let merchant_id = single_merchant(&parts.entries)?;
        Ok(Posting {
            id: parts.id,
            payment_id: parts.payment_id,
            refund_id: parts.refund_id,
            kind: parts.kind,
            entries: parts.entries,
            created_at: parts.created_at,
            merchant_id,
        })
    }

    pub fn id(&self) -> TransactionId {
        self.id
    }
    pub fn kind(&self) -> PostingKind {
        self.kind
    }
    pub fn payment_id(&self) -> Option<PaymentId> {
        self.payment_id
    }
    pub fn refund_id(&self) -> Option<RefundId> {
        self.refund_id
    }
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// The merchant whose accounts the posting touches, if any.
    pub fn merchant_id(&self) -> Option<&MerchantId> {
        self.merchant_id.as_ref()
    }

    /// What the posting adds to each (account, currency): debit and credit
    /// totals, in account-name order (the order the store locks rows in).
    pub fn account_totals(&self) -> Vec<AccountTotal> {
        let mut totals: BTreeMap<(Account, Currency), (i64, i64)> = BTreeMap::new();
        for entry in &self.entries {
            let slot = totals
                .entry((entry.account.clone(), entry.currency))
                .or_default();
            let side = match entry.direction {
                Direction::Debit => &mut slot.0,
                Direction::Credit => &mut slot.1,
            };
            // Cannot saturate: `new` proved each currency's total fits, and
            // one account's total is part of its currency's.
            *side = side.saturating_add(entry.amount.minor_units());
        }
        totals
            .into_iter()
            .map(|((account, currency), (debits, credits))| AccountTotal {
                account,
                currency,
                debits,
                credits,
            })
            .collect()
    }

    /// A captured card payment: debit `provider_clearing` the amount less
    /// the fee, debit `provider_fees` the fee, credit `merchant_revenue` the
    /// amount. A zero fee has no fee line; a fee above the amount (a fixed
    /// fee on a tiny charge) credits clearing with the difference, since
    /// then we owe the provider.
    pub fn card_payment(charge: &CardCharge, at: Timestamp) -> Result<Posting, LedgerError> {
        if charge.fee < 0 {
            return Err(LedgerError::NegativeFee(charge.fee));
        }
        let clearing = Account::provider_clearing(&charge.provider)?;
        let line = |account, direction, amount| entry(account, direction, amount, charge.currency);
        let mut entries = Vec::with_capacity(3);
        // A positive amount less a non-negative fee cannot overflow.
        let net = charge.amount.minor_units() - charge.fee;
        if net > 0 {
            entries.push(line(clearing, Direction::Debit, Amount::new(net)?));
        } else if net < 0 {
            entries.push(line(clearing, Direction::Credit, Amount::new(-net)?));
        }
        if charge.fee > 0 {
            let fees = Account::provider_fees(&charge.provider)?;
            entries.push(line(fees, Direction::Debit, Amount::new(charge.fee)?));
        }
        let revenue = Account::merchant_revenue(&charge.merchant_id)?;
        entries.push(line(revenue, Direction::Credit, charge.amount));
        Posting::new(PostingParts {
            id: TransactionId::new(),
            kind: PostingKind::Payment,
            payment_id: Some(charge.payment_id),
            refund_id: None,
            entries,
            created_at: at,
        })
    }

    /// A card refund: debit `merchant_revenue`, credit `provider_clearing`,
    /// the refunded amount each; the fee stays booked (see the module docs).
    pub fn card_refund(refund: &CardRefund, at: Timestamp) -> Result<Posting, LedgerError> {
        let revenue = Account::merchant_revenue(&refund.merchant_id)?;
        let clearing = Account::provider_clearing(&refund.provider)?;
        refund_posting(
            (refund.refund_id, refund.payment_id),
            revenue,
            clearing,
            (refund.amount, refund.currency),
            at,
        )
    }

    /// A payment from a wallet: debit `customer_wallet` (what we hold for
    /// the customer shrinks), credit `merchant_revenue`.
    pub fn wallet_payment(charge: &WalletCharge, at: Timestamp) -> Result<Posting, LedgerError> {
        let wallet = Account::customer_wallet(&charge.merchant_id, &charge.customer_id)?;
        let revenue = Account::merchant_revenue(&charge.merchant_id)?;
        Posting::new(PostingParts {
            id: TransactionId::new(),
            kind: PostingKind::Payment,
            payment_id: Some(charge.payment_id),
            refund_id: None,
            entries: vec![
                entry(wallet, Direction::Debit, charge.amount, charge.currency),
                entry(revenue, Direction::Credit, charge.amount, charge.currency),
            ],
            created_at: at,
        })
    }

    /// A refund to a wallet: the reverse of [`Posting::wallet_payment`]
    /// for the refunded amount.
    pub fn wallet_refund(refund: &WalletRefund, at: Timestamp) -> Result<Posting, LedgerError> {
        let revenue = Account::merchant_revenue(&refund.merchant_id)?;
        let wallet = Account::customer_wallet(&refund.merchant_id, &refund.customer_id)?;
        refund_posting(
            (refund.refund_id, refund.payment_id),
            revenue,
            wallet,
            (refund.amount, refund.currency),
            at,
        )
    }

    /// Money into a wallet: debit `wallet_funding`, credit `customer_wallet`.
    pub fn wallet_top_up(top_up: &WalletTopUp, at: Timestamp) -> Result<Posting, LedgerError> {
        let funding = Account::wallet_funding(&top_up.merchant_id)?;
        let wallet = Account::customer_wallet(&top_up.merchant_id, &top_up.customer_id)?;
        Posting::new(PostingParts {
            id: top_up.id,
            kind: PostingKind::WalletTopUp,
            payment_id: None,
            refund_id: None,
            entries: vec![
                entry(funding, Direction::Debit, top_up.amount, top_up.currency),
                entry(wallet, Direction::Credit, top_up.amount, top_up.currency),
            ],
            created_at: at,
        })
    }
}

/// One account's share of a posting, as [`Posting::account_totals`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTotal {
    pub account: Account,
    pub currency: Currency,
    pub debits: i64,
    pub credits: i64,
}

/// A refund's two lines: debit `from` (revenue), credit `to`.
fn refund_posting(
    (refund_id, payment_id): (RefundId, PaymentId),
    from: Account,
    to: Account,
    (amount, currency): (Amount, Currency),
    at: Timestamp,
) -> Result<Posting, LedgerError> {
    Posting::new(PostingParts {
        id: TransactionId::new(),
        kind: PostingKind::Refund,
        payment_id: Some(payment_id),
        refund_id: Some(refund_id),
        entries: vec![
            entry(from, Direction::Debit, amount, currency),
            entry(to, Direction::Credit, amount, currency),
        ],
        created_at: at,
    })
}

fn entry(account: Account, direction: Direction, amount: Amount, currency: Currency) -> Entry {
    Entry {
        account,
        direction,
        amount,
        currency,
    }
}

/// A payment posting names its payment, a refund its refund and payment,
/// a top-up neither: the database's uniqueness rests on these.
fn check_references(
    kind: PostingKind,
    payment_id: Option<PaymentId>,
    refund_id: Option<RefundId>,
) -> Result<(), LedgerError> {
    let fits = match kind {
        PostingKind::Payment => payment_id.is_some() && refund_id.is_none(),
        PostingKind::Refund => payment_id.is_some() && refund_id.is_some(),
        PostingKind::WalletTopUp => payment_id.is_none() && refund_id.is_none(),
    };
    if fits {
        Ok(())
    } else {
        Err(LedgerError::WrongReferences(kind.as_str()))
    }
}

/// Debits equal credits in every currency, summed with checked arithmetic.
fn check_balanced(entries: &[Entry]) -> Result<(), LedgerError> {
    let mut totals: BTreeMap<Currency, (i64, i64)> = BTreeMap::new();
    for entry in entries {
        let (debits, credits) = totals.entry(entry.currency).or_default();
        let side = match entry.direction {
            Direction::Debit => debits,
            Direction::Credit => credits,
        };
        *side = side
            .checked_add(entry.amount.minor_units())
            .ok_or(LedgerError::Overflow)?;
    }
    match totals.into_iter().find(|(_, (d, c))| d != c) {
        Some((currency, (debits, credits))) => Err(LedgerError::Unbalanced {
            currency,
            debits,
            credits,
        }),
        None => Ok(()),
    }
}

/// The one merchant whose accounts the entries touch, if any.
fn single_merchant(entries: &[Entry]) -> Result<Option<MerchantId>, LedgerError> {
    let mut found: Option<MerchantId> = None;
    for merchant in entries.iter().filter_map(|e| e.account.merchant()) {
        match &found {
            Some(seen) if *seen != merchant => return Err(LedgerError::MixedMerchants),
            Some(_) => {}
            None => found = Some(merchant),
        }
    }
    Ok(found)
}

/// A captured card charge, as [`Posting::card_payment`] books it.
#[derive(Debug, Clone)]
pub struct CardCharge {
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    pub provider: String,
    pub amount: Amount,
    pub currency: Currency,
    /// The provider's fee in minor units ([`super::Fee::on`]); 0 for none.
    pub fee: i64,
}

/// A succeeded card refund, as [`Posting::card_refund`] books it.
#[derive(Debug, Clone)]
pub struct CardRefund {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    /// The provider that captured the payment (and now pays it back).
    pub provider: String,
    pub amount: Amount,
    pub currency: Currency,
}

/// A payment from a customer's wallet, as [`Posting::wallet_payment`] books it.
#[derive(Debug, Clone)]
pub struct WalletCharge {
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    pub customer_id: String,
    pub amount: Amount,
    pub currency: Currency,
}

/// A refund into a customer's wallet, as [`Posting::wallet_refund`] books it.
#[derive(Debug, Clone)]
pub struct WalletRefund {
    pub refund_id: RefundId,
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    pub customer_id: String,
    pub amount: Amount,
    pub currency: Currency,
}

/// Money put into a customer's wallet, as [`Posting::wallet_top_up`] books it.
#[derive(Debug, Clone)]
pub struct WalletTopUp {
    /// Chosen by the caller, not by the builder: a top-up names no payment
    /// or refund, so its transaction id is what makes it idempotent. Store
    /// it with the request's idempotency key and post again with the same id.
    pub id: TransactionId,
    pub merchant_id: MerchantId,
    pub customer_id: String,
    pub amount: Amount,
    pub currency: Currency,
}

/// What an account holds in one currency.
///
/// `balance` is `debits − credits` (see the module's sign convention): a
/// wallet holding 3,000 reads `balance: -3000`, spendable `credits − debits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub account: Account,
    pub currency: Currency,
    pub debits: i64,
    pub credits: i64,
    pub balance: i64,
}

impl Balance {
    /// `None` if the totals are negative or their difference overflows.
    pub fn new(account: Account, currency: Currency, debits: i64, credits: i64) -> Option<Balance> {
        if debits < 0 || credits < 0 {
            return None;
        }
        Some(Balance {
            account,
            currency,
            debits,
            credits,
            balance: debits.checked_sub(credits)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("usd").expect("usd")
    }

    fn amount(minor_units: i64) -> Amount {
        Amount::new(minor_units).expect("amount")
    }

    fn at() -> Timestamp {
        Timestamp::parse_rfc3339("2026-01-31T23:59:59Z").expect("timestamp")
    }

    fn merchant() -> MerchantId {
        MerchantId::new("acme")
    }

    fn card(total: i64, fee: i64) -> CardCharge {
        CardCharge {
            payment_id: PaymentId::new(),
            merchant_id: merchant(),
            provider: "sandbox_a".into(),
            amount: amount(total),
            currency: usd(),
            fee,
        }
    }

    /// (account name, direction, amount) of each line, for readable asserts.
    fn lines(posting: &Posting) -> Vec<(String, &'static str, i64)> {
        posting
            .entries()
            .iter()
            .map(|e| {
                let name = e.account.to_string();
                (name, e.direction.as_str(), e.amount.minor_units())
            })
            .collect()
    }

    fn line(account: &str, direction: &'static str, amount: i64) -> (String, &'static str, i64) {
        (account.to_string(), direction, amount)
    }

    /// debits − credits of `account` over `postings` (the sign convention).
    fn balance_of(postings: &[Posting], account: &Account) -> i64 {
        postings
            .iter()
            .flat_map(|p| p.entries())
            .filter(|e| &e.account == account)
            .map(|e| match e.direction {
                Direction::Debit => e.amount.minor_units(),
                Direction::Credit => -e.amount.minor_units(),
            })
            .sum()
    }

    /// Recomputed independently of `check_balanced`, in i128.
    fn balanced_per_currency(posting: &Posting) -> bool {
        let mut net: BTreeMap<Currency, i128> = BTreeMap::new();
        for e in posting.entries() {
            let signed = i128::from(e.amount.minor_units());
            *net.entry(e.currency).or_default() += match e.direction {
                Direction::Debit => signed,
                Direction::Credit => -signed,
            };
        }
        net.values().all(|n| *n == 0)
    }

    #[test]
    fn design_example_card_payment() {
        let posting = Posting::card_payment(&card(1_000, 30), at()).expect("posting");
        assert_eq!(
            lines(&posting),
            vec![
                line("provider_clearing:sandbox_a", "debit", 970),
                line("provider_fees:sandbox_a", "debit", 30),
                line("merchant_revenue:acme", "credit", 1_000),
            ]
        );
        assert_eq!(posting.kind(), PostingKind::Payment);
        assert_eq!(posting.refund_id(), None);
        assert_eq!(posting.merchant_id(), Some(&merchant()));
        assert!(posting.id().to_string().starts_with("txn_"));
    }

    #[test]
    fn fee_edge_cases() {
        let no_fee = Posting::card_payment(&card(1_000, 0), at()).expect("posting");
        assert_eq!(
            lines(&no_fee),
            vec![
                line("provider_clearing:sandbox_a", "debit", 1_000),
                line("merchant_revenue:acme", "credit", 1_000),
            ]
        );
        let all_fee = Posting::card_payment(&card(30, 30), at()).expect("posting");
        assert_eq!(
            lines(&all_fee),
            vec![
                line("provider_fees:sandbox_a", "debit", 30),
                line("merchant_revenue:acme", "credit", 30),
            ]
        );
        let fee_above = Posting::card_payment(&card(20, 30), at()).expect("posting");
        assert_eq!(
            lines(&fee_above),
            vec![
                line("provider_clearing:sandbox_a", "credit", 10),
                line("provider_fees:sandbox_a", "debit", 30),
                line("merchant_revenue:acme", "credit", 20),
            ]
        );
        assert_eq!(
            Posting::card_payment(&card(100, -1), at()),
            Err(LedgerError::NegativeFee(-1))
        );
        assert_eq!(
            Posting::card_payment(&card(100, i64::MAX), at()),
            Err(LedgerError::Amount(AmountError::TooLarge))
        );
    }

    #[test]
    fn refunds_reverse_without_the_fee() {
        let charge = card(1_000, 30);
        let payment = Posting::card_payment(&charge, at()).expect("payment");
        let refund = Posting::card_refund(
            &CardRefund {
                refund_id: RefundId::new(),
                payment_id: charge.payment_id,
                merchant_id: merchant(),
                provider: "sandbox_a".into(),
                amount: amount(1_000),
                currency: usd(),
            },
            at(),
        )
        .expect("refund");
        assert_eq!(
            lines(&refund),
            vec![
                line("merchant_revenue:acme", "debit", 1_000),
                line("provider_clearing:sandbox_a", "credit", 1_000),
            ]
        );
        assert_eq!(refund.payment_id(), Some(charge.payment_id));
        let both = [payment, refund];
        let account = |name: &str| name.parse::<Account>().expect("account");
        assert_eq!(balance_of(&both, &account("merchant_revenue:acme")), 0);
        assert_eq!(balance_of(&both, &account("provider_fees:sandbox_a")), 30);
        assert_eq!(
            balance_of(&both, &account("provider_clearing:sandbox_a")),
            -30
        );
    }

    #[test]
    fn wallet_postings_move_the_liability() {
        let wallet = WalletCharge {
            payment_id: PaymentId::new(),
            merchant_id: merchant(),
            customer_id: "cus/42".into(),
            amount: amount(500),
            currency: usd(),
        };
        let paid = Posting::wallet_payment(&wallet, at()).expect("payment");
        assert_eq!(
            lines(&paid),
            vec![
                line("customer_wallet:acme/cus/42", "debit", 500),
                line("merchant_revenue:acme", "credit", 500),
            ]
        );
        let refund = WalletRefund {
            refund_id: RefundId::new(),
            payment_id: wallet.payment_id,
            merchant_id: merchant(),
            customer_id: "cus/42".into(),
            amount: amount(200),
            currency: usd(),
        };
        assert_eq!(
            lines(&Posting::wallet_refund(&refund, at()).expect("refund")),
            vec![
                line("merchant_revenue:acme", "debit", 200),
                line("customer_wallet:acme/cus/42", "credit", 200),
            ]
        );
        let top_up = WalletTopUp {
            id: TransactionId::new(),
            merchant_id: merchant(),
            customer_id: "cus/42".into(),
            amount: amount(3_000),
            currency: usd(),
        };
        let posted = Posting::wallet_top_up(&top_up, at()).expect("top-up");
        assert_eq!(posted.id(), top_up.id);
        assert_eq!(posted.payment_id(), None);
        assert_eq!(
            lines(&posted),
            vec![
                line("wallet_funding:acme", "debit", 3_000),
                line("customer_wallet:acme/cus/42", "credit", 3_000),
            ]
        );
    }

    #[test]
    fn accounts_parse_what_they_display() {
        let acme = merchant();
        let accounts = [
            Account::provider_clearing("sandbox_a"),
            Account::provider_fees("stripe"),
            Account::merchant_revenue(&acme),
            Account::wallet_funding(&acme),
            Account::customer_wallet(&acme, "c:1/2"),
        ];
        for account in accounts {
            let account = account.expect("valid");
            assert_eq!(account.to_string().parse::<Account>(), Ok(account.clone()));
        }
        let wallet: Account = "customer_wallet:acme/c:1/2".parse().expect("wallet");
        assert_eq!(wallet.merchant(), Some(acme.clone()));
        assert_eq!(wallet.customer(), Some("c:1/2"));
        assert!(wallet.is_customer_wallet());
        let clearing: Account = "provider_clearing:p".parse().expect("clearing");
        assert_eq!(clearing.merchant(), None);
        assert_eq!(clearing.kind(), AccountKind::ProviderClearing);
    }

    #[test]
    fn bad_account_names_are_refused() {
        let refused = [
            ("merchant_revenue", AccountError::NoKind),
            ("savings:x", AccountError::UnknownKind("savings".into())),
            ("merchant_revenue:", AccountError::BadOwner),
            ("provider_fees:a\nb", AccountError::BadOwner),
            ("customer_wallet:acme", AccountError::BadWalletOwner),
            ("customer_wallet:/c", AccountError::BadWalletOwner),
            ("customer_wallet:acme/", AccountError::BadWalletOwner),
        ];
        for (name, error) in refused {
            assert_eq!(name.parse::<Account>(), Err(error), "{name}");
        }
        let slashed = MerchantId::new("a/b");
        assert_eq!(
            Account::customer_wallet(&slashed, "c"),
            Err(AccountError::BadWalletOwner)
        );
    }

    fn parts(entries: Vec<Entry>) -> PostingParts {
        PostingParts {
            id: TransactionId::new(),
            kind: PostingKind::Payment,
            payment_id: Some(PaymentId::new()),
            refund_id: None,
            entries,
            created_at: at(),
        }
    }

    fn debit(account: &str, minor_units: i64, currency: &str) -> Entry {
        Entry {
            account: account.parse().expect("account"),
            direction: Direction::Debit,
            amount: amount(minor_units),
            currency: Currency::parse(currency).expect("currency"),
        }
    }

    fn credit(account: &str, minor_units: i64, currency: &str) -> Entry {
        Entry {
            direction: Direction::Credit,
            ..debit(account, minor_units, currency)
        }
    }

    #[test]
    fn unbalanced_postings_do_not_exist() {
        let single = parts(vec![debit("provider_clearing:p", 5, "usd")]);
        assert_eq!(Posting::new(single), Err(LedgerError::TooFewEntries));
        let short = parts(vec![
            debit("provider_clearing:p", 5, "usd"),
            credit("merchant_revenue:m", 4, "usd"),
        ]);
        assert!(matches!(
            Posting::new(short),
            Err(LedgerError::Unbalanced {
                debits: 5,
                credits: 4,
                ..
            })
        ));
        // Balanced in total but not per currency.
        let crossed = parts(vec![
            debit("provider_clearing:p", 5, "usd"),
            credit("merchant_revenue:m", 5, "eur"),
        ]);
        assert!(matches!(
            Posting::new(crossed),
            Err(LedgerError::Unbalanced { .. })
        ));
        // (Overflow needs ~10^8 lines of MAX_AMOUNT: checked, not testable.)
    }

    #[test]
    fn references_must_fit_the_kind() {
        let entries = vec![
            debit("wallet_funding:m", 5, "usd"),
            credit("customer_wallet:m/c", 5, "usd"),
        ];
        let top_up_with_payment = PostingParts {
            kind: PostingKind::WalletTopUp,
            ..parts(entries.clone())
        };
        assert_eq!(
            Posting::new(top_up_with_payment),
            Err(LedgerError::WrongReferences("wallet_top_up"))
        );
        let refund_without_refund_id = PostingParts {
            kind: PostingKind::Refund,
            ..parts(entries.clone())
        };
        assert_eq!(
            Posting::new(refund_without_refund_id),
            Err(LedgerError::WrongReferences("refund"))
        );
        let two_merchants = parts(vec![
            debit("customer_wallet:m/c", 5, "usd"),
            credit("merchant_revenue:other", 5, "usd"),
        ]);
        assert_eq!(
            Posting::new(two_merchants),
            Err(LedgerError::MixedMerchants)
        );
    }

    #[test]
    fn account_totals_are_sorted_and_summed() {
        let posting = Posting::new(parts(vec![
            credit("merchant_revenue:m", 7, "usd"),
            debit("customer_wallet:m/c", 3, "usd"),
            debit("customer_wallet:m/c", 4, "usd"),
        ]))
        .expect("posting");
        let totals = posting.account_totals();
        assert_eq!(totals.len(), 2);
        assert_eq!(totals[0].account.to_string(), "customer_wallet:m/c");
        assert_eq!((totals[0].debits, totals[0].credits), (7, 0));
        assert_eq!((totals[1].debits, totals[1].credits), (0, 7));
    }

    #[test]
    fn serializes_as_the_api_shows_it() {
        let posting = Posting::card_payment(&card(1_000, 0), at()).expect("posting");
        let json = serde_json::to_value(&posting).expect("json");
        assert_eq!(json["kind"], "payment");
        assert_eq!(json["refund_id"], serde_json::Value::Null);
        assert_eq!(json["created_at"], "2026-01-31T23:59:59.000000Z");
        assert_eq!(
            json["entries"][1],
            serde_json::json!({
                "account": "merchant_revenue:acme",
                "direction": "credit",
                "amount": 1000,
                "currency": "usd",
            })
        );
        assert!(json.get("merchant_id").is_none());
        let balance = Balance::new("merchant_revenue:acme".parse().expect("a"), usd(), 0, 10);
        assert_eq!(balance.map(|b| b.balance), Some(-10));
    }

    fn owner() -> impl Strategy<Value = String> {
        "[a-z0-9_]{1,12}"
    }

    fn any_currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(vec!["usd", "eur", "jpy", "kwd"])
            .prop_map(|code| Currency::parse(code).expect("currency"))
    }

    /// Any builder's output, from arbitrary amounts, fees and names.
    fn any_posting() -> impl Strategy<Value = Posting> {
        let amounts = 1..=crate::domain::MAX_AMOUNT;
        (0..5u8, amounts, 0..=2 * crate::domain::MAX_AMOUNT)
            .prop_flat_map(|(builder, minor_units, fee)| {
                (
                    Just(builder),
                    Just(minor_units),
                    Just(fee),
                    owner(),
                    owner(),
                    any_currency(),
                )
            })
            .prop_filter_map(
                "a fee above MAX_AMOUNT",
                |(builder, minor_units, fee, name, customer, currency)| {
                    build(
                        builder,
                        amount(minor_units),
                        fee,
                        &name,
                        &customer,
                        currency,
                    )
                    .ok()
                },
            )
    }

    fn build(
        builder: u8,
        amount: Amount,
        fee: i64,
        name: &str,
        customer: &str,
        currency: Currency,
    ) -> Result<Posting, LedgerError> {
        let merchant_id = MerchantId::new(name);
        let customer_id = customer.to_string();
        let (payment_id, refund_id) = (PaymentId::new(), RefundId::new());
        match builder {
            0 => Posting::card_payment(
                &CardCharge {
                    payment_id,
                    merchant_id,
                    provider: customer_id,
                    amount,
                    currency,
                    fee,
                },
                at(),
            ),
            1 => Posting::card_refund(
                &CardRefund {
                    refund_id,
                    payment_id,
                    merchant_id,
                    provider: customer_id,
                    amount,
                    currency,
                },
                at(),
            ),
            2 => Posting::wallet_payment(
                &WalletCharge {
                    payment_id,
                    merchant_id,
                    customer_id,
                    amount,
                    currency,
                },
                at(),
            ),
            3 => Posting::wallet_refund(
                &WalletRefund {
                    refund_id,
                    payment_id,
                    merchant_id,
                    customer_id,
                    amount,
                    currency,
                },
                at(),
            ),
            _ => Posting::wallet_top_up(
                &WalletTopUp {
                    id: TransactionId::new(),
                    merchant_id,
                    customer_id,
                    amount,
                    currency,
                },
                at(),
            ),
        }
    }

    /// An amount and refunds of it that add up to at most the amount.
    fn amount_and_refunds() -> impl Strategy<Value = (i64, Vec<i64>)> {
        (1..=1_000_000i64)
            .prop_flat_map(|total| (Just(total), prop::collection::vec(1..=total, 0..8)))
            .prop_map(|(total, mut cuts)| {
                // Sorted distinct cut points ending at `total` split it into
                // positive parts that add up to it.
                cuts.push(total);
                cuts.sort_unstable();
                cuts.dedup();
                let mut previous = 0;
                let sizes = cuts
                    .into_iter()
                    .map(|cut| cut - std::mem::replace(&mut previous, cut))
                    .collect();
                (total, sizes)
            })
    }

    proptest! {
        #[test]
        fn builders_always_balance(posting in any_posting()) {
            prop_assert!(balanced_per_currency(&posting));
            prop_assert!(posting.entries().len() >= MIN_POSTING_ENTRIES);
            prop_assert!(posting.entries().iter().all(|e| e.amount.minor_units() > 0));
            // What is built can be rebuilt (as the store does from rows).
            let rebuilt = Posting::new(PostingParts {
                id: posting.id(),
                kind: posting.kind(),
                payment_id: posting.payment_id(),
                refund_id: posting.refund_id(),
                entries: posting.entries().to_vec(),
                created_at: posting.created_at(),
            });
            prop_assert_eq!(rebuilt, Ok(posting));
        }

        #[test]
        fn refunds_net_revenue_to_what_is_kept(
            (total, refunds) in amount_and_refunds(),
            fee in 0..=100_000i64,
            by_wallet in any::<bool>(),
        ) {
            let refunded: i64 = refunds.iter().sum();
            prop_assert_eq!(refunded, total);
            let payment_id = PaymentId::new();
            let revenue = Account::merchant_revenue(&merchant()).expect("account");
            for kept in 0..=refunds.len() {
                let mut postings = vec![payment(payment_id, total, fee, by_wallet)];
                for part in &refunds[..refunds.len() - kept] {
                    postings.push(refund(payment_id, *part, by_wallet));
                }
                let refunded: i64 = refunds[..refunds.len() - kept].iter().sum();
                // Revenue is income: it reads negative (sign convention).
                prop_assert_eq!(balance_of(&postings, &revenue), refunded - total);
                prop_assert!(postings.iter().all(balanced_per_currency));
            }
        }

        #[test]
        fn account_names_round_trip(merchant in "[ -~&&[^/]]{1,20}", customer in "[ -~]{1,20}") {
            let merchant = MerchantId::new(merchant);
            let wallet = Account::customer_wallet(&merchant, &customer).expect("wallet");
            prop_assert_eq!(wallet.to_string().parse::<Account>(), Ok(wallet.clone()));
            prop_assert_eq!(wallet.merchant(), Some(merchant));
            prop_assert_eq!(wallet.customer(), Some(customer.as_str()));
        }
    }

    fn payment(payment_id: PaymentId, total: i64, fee: i64, by_wallet: bool) -> Posting {
        let posting = if by_wallet {
            Posting::wallet_payment(
                &WalletCharge {
                    payment_id,
                    merchant_id: merchant(),
                    customer_id: "c".into(),
                    amount: amount(total),
                    currency: usd(),
                },
                at(),
            )
        } else {
            Posting::card_payment(
                &CardCharge {
                    fee,
                    payment_id,
                    ..card(total, fee)
                },
                at(),
            )
        };
        posting.expect("payment")
    }

    fn refund(payment_id: PaymentId, part: i64, by_wallet: bool) -> Posting {
        let refund_id = RefundId::new();
        let posting = if by_wallet {
            Posting::wallet_refund(
                &WalletRefund {
                    refund_id,
                    payment_id,
                    merchant_id: merchant(),
                    customer_id: "c".into(),
                    amount: amount(part),
                    currency: usd(),
                },
                at(),
            )
        } else {
            Posting::card_refund(
                &CardRefund {
                    refund_id,
                    payment_id,
                    merchant_id: merchant(),
                    provider: "sandbox_a".into(),
                    amount: amount(part),
                    currency: usd(),
                },
                at(),
            )
        };
        posting.expect("refund")
    }
}
