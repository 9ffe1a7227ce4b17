//! The two sets of books the check compares, read the way a user would:
//! the engine's payments and the sandbox's charges, page by page through
//! the API (or through the embedded handle), with the development key,
//! which is also the operator key in development mode.

use super::check::{self, ByOrder};
use super::http::DEV_KEY;
use super::setup::SANDBOXES;
use payments::config::DEVELOPMENT_MERCHANT;
use payments::domain::{MerchantId, PaymentStatus, Timestamp};
use payments::providers::sandbox::ChargeFilter;
use payments::store::PaymentFilter;
use payments::EngineHandle;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Rows per page: the API's maximum.
const PAGE_LIMIT: u32 = 100;
/// The sandbox record's `busy_timeout`, for the fault hook's write.
const RECORD_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Charge keys and succeeded payment ids, by order.
#[derive(Default)]
pub struct Books {
    pub charged: ByOrder,
    pub succeeded: ByOrder,
}

#[derive(Deserialize)]
struct Page<T> {
    data: Vec<T>,
    has_more: bool,
}

#[derive(Deserialize)]
struct PaymentRow {
    id: String,
    order_id: String,
    status: String,
}

#[derive(Deserialize)]
struct ChargeRow {
    id: String,
    merchant_id: String,
    order_id: String,
    idempotency_key: String,
}

/// Both books through the HTTP API at `base_url`.
/// `since` leaves out payments created before it (a seeded store's).
pub async fn from_api(base_url: &str, since: Option<Timestamp>) -> Result<Books, String> {
    let client = reqwest::Client::new();
    let mut books = Books::default();
    let filter = since.map_or(String::new(), |at| {
        format!(
            "?created_gte={}",
            at.as_datetime()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    });
    let payments: Vec<PaymentRow> = all_pages(
        &client,
        &format!("{base_url}/v1/payments{filter}"),
        |p: &PaymentRow| &p.id,
    )
    .await?;
    for payment in payments.into_iter().filter(|p| p.status == "succeeded") {
        check::add(
            &mut books.succeeded,
            DEVELOPMENT_MERCHANT,
            &payment.order_id,
            payment.id,
        );
    }
    for sandbox in SANDBOXES {
        let url = format!("{base_url}/v1/sandbox/{sandbox}/charges");
        let charges: Vec<ChargeRow> = all_pages(&client, &url, |c: &ChargeRow| &c.id).await?;
        for charge in charges {
            check::add(
                &mut books.charged,
                &charge.merchant_id,
                &charge.order_id,
                charge.idempotency_key,
            );
        }
    }
    Ok(books)
}

/// Every row of a paged listing, following `starting_after`.
async fn all_pages<T: DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    id_of: fn(&T) -> &String,
) -> Result<Vec<T>, String> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = client
            .get(url)
            .bearer_auth(DEV_KEY)
            .query(&[("limit", PAGE_LIMIT)]);
        if let Some(after) = &after {
            request = request.query(&[("starting_after", after)]);
        }
        let page: Page<T> = fetch(request, url).await?;
        after = page.data.last().map(|row| id_of(row).clone());
        rows.extend(page.data);
        if !page.has_more || after.is_none() {
            return Ok(rows);
        }
    }
}

async fn fetch<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<T, String> {
    let answer = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = answer.status();
    if !status.is_success() {
        let body = answer.text().await.unwrap_or_default();
        return Err(format!("GET {url}: {status}: {body}"));
    }
    answer.json().await.map_err(|e| format!("GET {url}: {e}"))
}

/// Both books through an embedded engine's handle.
pub async fn from_engine(handle: &EngineHandle, since: Option<Timestamp>) -> Result<Books, String> {
    let mut books = Books::default();
    let merchant = MerchantId::new(DEVELOPMENT_MERCHANT);
    let mut filter = PaymentFilter {
        limit: PAGE_LIMIT,
        created_gte: since,
        ..PaymentFilter::default()
    };
    loop {
        let page = handle
            .list_payments(&merchant, filter.clone())
            .await
            .map_err(|e| e.to_string())?;
        filter.starting_after = page.data.last().map(|p| p.id);
        for p in page
            .data
            .iter()
            .filter(|p| p.status == PaymentStatus::Succeeded)
        {
            check::add(
                &mut books.succeeded,
                merchant.as_str(),
                &p.order_id,
                p.id.to_string(),
            );
        }
        if !page.has_more || filter.starting_after.is_none() {
            break;
        }
    }
    for sandbox in SANDBOXES {
        engine_charges(handle, sandbox, &mut books.charged).await?;
    }
    Ok(books)
}

async fn engine_charges(
    handle: &EngineHandle,
    sandbox: &str,
    charged: &mut ByOrder,
) -> Result<(), String> {
    let mut filter = ChargeFilter {
        limit: PAGE_LIMIT,
        ..ChargeFilter::default()
    };
    loop {
        let page = handle
            .sandbox_charges(sandbox, filter.clone())
            .await
            .map_err(|e| e.to_string())?;
        filter.starting_after = page.data.last().map(|c| c.id.clone());
        for c in page.data {
            check::add(charged, &c.merchant_id, &c.order_id, c.idempotency_key);
        }
        if !page.has_more || filter.starting_after.is_none() {
            return Ok(());
        }
    }
}

/// **Test hook** (`--fault-drop-charge`): deletes the newest charge from
/// the sandbox's record in `data_dir`, as a provider whose books lost one
/// would look, so the check must fail.
pub fn drop_one_charge(data_dir: &Path) -> Result<(), String> {
    let dropped = (|| -> rusqlite::Result<usize> {
        let conn = rusqlite::Connection::open(data_dir.join("sandbox.db"))?;
        conn.busy_timeout(RECORD_BUSY_TIMEOUT)?;
        conn.execute(
            "DELETE FROM sandbox_charges WHERE rowid = (SELECT max(rowid) FROM sandbox_charges)",
            [],
        )
    })()
    .map_err(|e| format!("--fault-drop-charge: {e}"))?;
    if dropped == 0 {
        return Err("--fault-drop-charge: the sandbox charged nothing".into());
    }
    Ok(())
}
